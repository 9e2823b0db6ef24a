"""The web app's views (closeloop/store/views.py, closeloop.readmodel.WebViews) on SQLite and PostgreSQL, from
rows written through the store's own write methods: the dashboard's lists, totals, groupings, ageing and
effectiveness counts under each filter; a person's work; a postmortem with its items and notifications; the
audit log; draft autosaves; single-use action links; and the 0005 -> 0006 upgrade keeping what was there."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from alembic import command

from closeloop.models import ActionItem, ItemStatus, Verdict
from closeloop.readmodel import AGEING_BUCKETS, AuditEntry, Counts, DashboardFilter, WebViews
from closeloop.store.store import Store
from closeloop.store.views import Views
from tests.closeloop.store.helpers import T0, assert_utc, incident
from tests.closeloop.store.test_migrations import alembic_config, schema_diff, table_names

NOW = T0
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)

# postmortem -> (owner, stage, stalled flag, stage due, severity, services)
POSTMORTEMS: dict[str, tuple[str, str, bool, datetime | None, str, list[str]]] = {
    "A": ("alice", "drafting", False, NOW - 3 * DAY, "SEV1", ["payments", "checkout"]),  # stalled: past due
    "B": ("bob", "in_review", True, NOW + 2 * DAY, "SEV2", ["search"]),  # stalled: flagged
    "C": ("carol", "drafting", False, NOW + 5 * DAY, "SEV1", ["search"]),  # on time
    "D": ("alice", "closed", True, NOW - 10 * DAY, "SEV3", ["checkout"]),  # closed: never stalled
    "E": ("dave", "in_review", True, None, "SEV2", ["search"]),  # stalled, no due time: listed last
    "F": ("alice", "drafting", False, NOW + 10 * DAY, "SEV3", []),  # on time
}
# item -> (owner, due, status, verdict)
ITEMS: dict[str, tuple[str, datetime, str, Verdict | None]] = {
    "A/item-1": ("alice", NOW - timedelta(hours=1), "open", None),  # 1-7 days
    "A/item-2": ("bob", NOW - 7 * DAY, "open", None),  # exactly 7 days: still 1-7 days
    "A/item-10": ("bob", NOW - 7 * DAY - SECOND, "open", None),  # 8-30 days
    "A/item-3": ("carol", NOW - 50 * DAY, "wont_do", None),  # not open: not overdue
    "B/item-1": ("carol", NOW - 30 * DAY, "open", None),  # exactly 30 days: 8-30 days
    "B/item-2": ("alice", NOW - 90 * DAY - SECOND, "open", None),  # over 90 days
    "B/item-3": ("bob", NOW - 20 * DAY, "done", Verdict.unknown),
    "C/item-1": ("alice", NOW - 90 * DAY, "open", None),  # exactly 90 days: 31-90 days
    "C/item-2": ("carol", NOW, "open", None),  # due now: not overdue yet
    "C/item-3": ("carol", NOW + DAY, "open", None),
    "D/item-1": ("alice", NOW - 40 * DAY, "done", Verdict.effective),
    "D/item-2": ("bob", NOW - 40 * DAY, "done", Verdict.ineffective),
    "D/item-3": ("alice", NOW - 40 * DAY, "done", None),  # awaiting alice's verdict
}


def pid(name: str) -> str:
    return f"postmortem/pagerduty/{name}"


def iid(name: str) -> str:
    head, _, item = name.partition("/")
    return f"{pid(head)}/{item}"


def write_lifecycles(store: Store) -> None:
    for name, (owner, stage, stalled, due, severity, services) in POSTMORTEMS.items():
        inc = incident(name, services=services, severity=severity, title=f"Incident {name}")
        store.records.upsert_postmortem(pid(name), inc, owner=owner, stage=stage, stalled=stalled, stage_due_at=due)
    store.records.save_document(pid("D"), markdown="# D", html="<h1>D</h1>", ref="documents/D.md")
    for name, (owner, due, status, verdict) in ITEMS.items():
        done = status == "done"
        store.records.upsert_action_item(ActionItem(
            id=iid(name), postmortem_id=pid(name.partition("/")[0]), title=f"Fix {name}", owner=owner,
            priority="P2", kind="prevent", due_at=due, tracker="jira", status=ItemStatus(status),
            completed_at=due + DAY if done else None, verdict=verdict,
            ticket_key=f"OPS-{len(name)}" if name == "D/item-1" else None,
            ticket_url="https://jira.example.com/browse/OPS-8" if name == "D/item-1" else None))


@pytest.fixture
def views(store: Store) -> Views:
    write_lifecycles(store)
    return store.views


def ids(rows: list[Any]) -> list[str]:
    return [r.id.removeprefix("postmortem/pagerduty/") for r in rows]


def test_views_implements_the_web_apps_interface(store: Store) -> None:
    views: WebViews = store.views  # mypy checks the Protocol; this checks every method is there
    assert all(callable(getattr(views, name)) for name in WebViews.__dict__ if not name.startswith("_")
               and callable(WebViews.__dict__[name]))


def test_dashboard_for_everyone(views: Views) -> None:
    d = views.dashboard(DashboardFilter(), NOW)
    assert ids(d.stalled) == ["A", "B", "E"] and d.stalled_total == 3  # most overdue first, no due time last
    assert ids(d.overdue) == ["B/item-2", "C/item-1", "B/item-1", "A/item-10", "A/item-2", "A/item-1"]
    assert d.overdue_total == 6
    assert d.by_owner == {"alice": Counts(stalled=1, overdue=3), "bob": Counts(stalled=1, overdue=2),
                          "carol": Counts(stalled=0, overdue=1), "dave": Counts(stalled=1, overdue=0)}
    assert d.by_severity == {"SEV1": Counts(stalled=1, overdue=4), "SEV2": Counts(stalled=2, overdue=2)}
    assert d.by_service == {"checkout": Counts(stalled=1, overdue=3), "payments": Counts(stalled=1, overdue=3),
                            "search": Counts(stalled=2, overdue=3)}
    assert d.ageing == {"1-7 days": 2, "8-30 days": 2, "31-90 days": 1, "over 90 days": 1}
    assert list(d.ageing) == [label for label, _, _ in AGEING_BUCKETS]
    assert (d.closed_items, d.verified_effective, d.verified_ineffective) == (4, 1, 1)

    a = d.stalled[0]
    assert (a.title, a.severity, a.services, a.owner, a.stage, a.stalled) == \
        ("Incident A", "SEV1", ["checkout", "payments"], "alice", "drafting", False)
    assert a.stage_due_at == NOW - 3 * DAY and a.resolved_at == T0 + timedelta(hours=1)
    assert_utc(a.stage_due_at) and a.updated_at is not None and d.stalled[2].stage_due_at is None
    item = d.overdue[0]
    assert (item.postmortem_id, item.title, item.owner, item.priority, item.kind, item.status) == \
        (pid("B"), "Fix B/item-2", "alice", "P2", "prevent", "open")
    assert (item.severity, item.services, item.ticket_url, item.verdict) == ("SEV2", ["search"], None, None)
    assert item.due_at == NOW - 90 * DAY - SECOND
    assert_utc(item.due_at)


def test_dashboard_limits_the_lists_but_counts_everything(views: Views) -> None:
    d = views.dashboard(DashboardFilter(limit=2), NOW)
    assert ids(d.stalled) == ["A", "B"] and d.stalled_total == 3
    assert ids(d.overdue) == ["B/item-2", "C/item-1"] and d.overdue_total == 6
    assert sum(d.ageing.values()) == 6 and sum(c.overdue for c in d.by_severity.values()) == 6


def test_dashboard_of_some_owners_leaves_out_everyone_elses_work(views: Views) -> None:
    d = views.dashboard(DashboardFilter(owners=["alice"]), NOW)
    assert ids(d.stalled) == ["A"] and d.stalled_total == 1
    assert ids(d.overdue) == ["B/item-2", "C/item-1", "A/item-1"] and d.overdue_total == 3
    assert {i.owner for i in d.overdue} == {"alice"}
    assert d.by_owner == {"alice": Counts(stalled=1, overdue=3)}
    assert d.by_severity == {"SEV1": Counts(stalled=1, overdue=2), "SEV2": Counts(stalled=0, overdue=1)}
    assert d.ageing == {"1-7 days": 1, "8-30 days": 0, "31-90 days": 1, "over 90 days": 1}
    assert (d.closed_items, d.verified_effective, d.verified_ineffective) == (2, 1, 0)

    team = views.dashboard(DashboardFilter(owners=["bob", "dave"]), NOW)
    assert ids(team.stalled) == ["B", "E"] and ids(team.overdue) == ["A/item-10", "A/item-2"]
    assert set(team.by_owner) == {"bob", "dave"}
    assert (team.closed_items, team.verified_effective, team.verified_ineffective) == (2, 0, 1)

    nobody = views.dashboard(DashboardFilter(owners=[]), NOW)  # a manager with no one to see
    assert (nobody.stalled, nobody.overdue, nobody.by_owner, nobody.closed_items) == ([], [], {}, 0)
    assert sum(nobody.ageing.values()) == 0


def test_dashboard_by_service_and_severity(views: Views) -> None:
    search = views.dashboard(DashboardFilter(service="search"), NOW)
    assert ids(search.stalled) == ["B", "E"] and ids(search.overdue) == ["B/item-2", "C/item-1", "B/item-1"]
    assert search.by_service == {"search": Counts(stalled=2, overdue=3)}
    assert (search.closed_items, search.verified_effective) == (1, 0)  # B/item-3 (verdict unknown)

    sev1 = views.dashboard(DashboardFilter(severity="SEV1"), NOW)
    assert ids(sev1.stalled) == ["A"] and sev1.overdue_total == 4 and set(sev1.by_severity) == {"SEV1"}
    assert sev1.by_service == {"checkout": Counts(stalled=1, overdue=3), "payments": Counts(stalled=1, overdue=3),
                               "search": Counts(stalled=0, overdue=1)}

    both = views.dashboard(DashboardFilter(service="search", severity="SEV1", owners=["alice"]), NOW)
    assert both.stalled == [] and ids(both.overdue) == ["C/item-1"]

    closed = views.dashboard(DashboardFilter(service="checkout", severity="SEV3"), NOW)
    assert closed.stalled_total == closed.overdue_total == 0
    assert (closed.closed_items, closed.verified_effective, closed.verified_ineffective) == (3, 1, 1)
    assert views.dashboard(DashboardFilter(service="nothing"), NOW).by_service == {}


def test_ageing_moves_with_now(views: Views) -> None:
    later = views.dashboard(DashboardFilter(), NOW + SECOND)  # each edge item moves one bucket on
    assert later.ageing == {"1-7 days": 2, "8-30 days": 2, "31-90 days": 1, "over 90 days": 2}
    assert later.overdue_total == 7  # C/item-2 was due at NOW


def test_my_work(views: Views) -> None:
    alice = views.my_work("alice", NOW)
    assert ids(alice.drafts) == ["A", "F"]
    assert ids(alice.items) == ["B/item-2", "C/item-1", "A/item-1"]
    assert ids(alice.verdicts) == ["D/item-3"]
    assert ids(alice.in_review) == ["B", "E"]
    carol = views.my_work("carol", NOW)
    assert ids(carol.drafts) == ["C"] and ids(carol.items) == ["B/item-1", "C/item-2", "C/item-3"]
    assert carol.verdicts == [] and ids(carol.in_review) == ["B", "E"]
    nobody = views.my_work("zed", NOW)
    assert (nobody.drafts, nobody.items, nobody.verdicts) == ([], [], [])


def test_a_postmortem_and_its_items(views: Views) -> None:
    d = views.postmortem(pid("D"))
    assert d is not None and (d.stage, d.document_ref, d.services, d.severity) == \
        ("closed", "documents/D.md", ["checkout"], "SEV3")
    assert views.postmortem(pid("nope")) is None
    assert ids(views.items(pid("A"))) == ["A/item-1", "A/item-2", "A/item-3", "A/item-10"]  # by number
    done = views.items(pid("D"))[0]
    assert (done.status, done.verdict, done.ticket_key, done.ticket_url) == \
        ("done", "effective", "OPS-8", "https://jira.example.com/browse/OPS-8")
    assert done.completed_at == NOW - 39 * DAY and done.services == ["checkout"]
    assert views.items(pid("nope")) == []


def test_notifications_newest_first_with_what_each_channel_did(store: Store) -> None:
    def notify(key: str, at: datetime, postmortem_id: str, item_id: str | None = None) -> None:
        store.local.record_notification(key=key, kind="reminder", recipient="alice", subject=f"About {key}",
                                        body="b", at=at, postmortem_id=postmortem_id, item_id=item_id)

    notify("a/invite", NOW - 2 * DAY, pid("A"))
    notify("a/item-1/reminder", NOW - DAY, iid("A/item-1"), iid("A/item-1"))  # an item's
    notify("a/draft-due", NOW, pid("A"))
    notify("a1/draft-due", NOW, pid("A1"))  # another postmortem whose id starts the same
    store.channel_deliveries.sent("a/invite", "email", "alice", "alice@example.com", "<m1@example.com>")
    store.channel_deliveries.failed("a/invite", "slack", "alice", "U0ALICE", "user_not_found")
    store.channel_deliveries.queue("a/item-1/reminder", "digest", "alice", "alice")

    got = store.views.notifications(pid("A"))
    assert [n.subject for n in got] == ["About a/draft-due", "About a/item-1/reminder", "About a/invite"]
    assert [n.deliveries for n in got] == [[], ["digest: queued"], ["email: sent", "slack: failed (user_not_found)"]]
    assert got[1].item_id == iid("A/item-1") and got[0].item_id is None
    assert (got[0].kind, got[0].recipient, got[0].channel, got[0].at) == ("reminder", "alice", "log", NOW)
    assert_utc(got[0].sent_at)
    assert [n.subject for n in store.views.notifications(pid("A"), limit=1)] == ["About a/draft-due"]
    assert store.views.notifications(pid("B")) == []


def test_audit_log_newest_first_by_target(store: Store) -> None:
    views = store.views
    for minutes, action in ((0, "draft.submit"), (1, "review.approve"), (-1, "draft.open")):
        views.record_audit(AuditEntry(at=NOW + timedelta(minutes=minutes), person="bob", action=action,
                                      target=pid("A"), via="web", address="203.0.113.7"))
    views.record_audit(AuditEntry(at=NOW, person="carol", action="review.approve", target=pid("A"), via="link",
                                  address="2001:db8::1", outcome="refused: not a reviewer", detail="x" * 5000))
    views.record_audit(AuditEntry(at=NOW, person="bob", action="signin", target="", via="web"))

    got = views.audit(pid("A"))
    assert [(e.person, e.action) for e in got] == [("bob", "review.approve"), ("carol", "review.approve"),
                                                   ("bob", "draft.submit"), ("bob", "draft.open")]
    refused = got[1]
    assert (refused.via, refused.address, refused.outcome, len(refused.detail)) == \
        ("link", "2001:db8::1", "refused: not a reviewer", 5000)
    assert got[0].at == NOW + timedelta(minutes=1) and got[0].outcome == "ok"
    assert_utc(got[0].at)
    assert [e.action for e in views.audit(pid("A"), limit=2)] == ["review.approve", "review.approve"]
    assert [e.action for e in views.audit("")] == ["signin"]
    assert views.audit(pid("B")) == []


def test_draft_autosaves_are_kept_per_person_replaced_and_discarded(store: Store) -> None:
    views = store.views
    assert views.saved_draft(pid("A"), "alice") is None
    views.save_draft(pid("A"), "alice", {"summary": "first"}, NOW)
    views.save_draft(pid("A"), "alice", {"summary": "second", "items": [{"title": "x"}]}, NOW + SECOND)
    views.save_draft(pid("A"), "bob", {"summary": "bob's"}, NOW)
    data, at = views.saved_draft(pid("A"), "alice") or ({}, None)
    assert data == {"summary": "second", "items": [{"title": "x"}]} and at == NOW + SECOND
    assert_utc(at)
    views.discard_draft(pid("A"), "alice")
    views.discard_draft(pid("A"), "alice")  # nothing left: no error
    assert views.saved_draft(pid("A"), "alice") is None
    assert views.saved_draft(pid("A"), "bob") == ({"summary": "bob's"}, NOW)


def test_an_action_link_is_used_once(store: Store) -> None:
    views = store.views
    assert views.use_link("tok-1", NOW + DAY) is True
    assert views.use_link("tok-1", NOW + DAY) is False
    assert views.use_link("tok-2", NOW + DAY) is True
    with pytest.raises(ValueError):
        views.use_link("x" * 65, NOW + DAY)


def test_one_action_link_used_by_racing_requests_works_once(store: Store) -> None:
    results: list[bool] = []
    start = threading.Barrier(6)

    def use() -> None:
        start.wait()
        results.append(store.views.use_link("raced", NOW + DAY))

    threads = [threading.Thread(target=use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]


def test_upgrading_a_0005_database_keeps_its_rows(db_url: str) -> None:
    cfg = alembic_config(db_url)
    old = Store(db_url)  # the rows a 0005 deployment kept: written now, then the schema taken back to 0005
    try:
        write_lifecycles(old)
    finally:
        old.close()
    command.downgrade(cfg, "0005")
    assert "web_audit" not in table_names(db_url)
    command.upgrade(cfg, "head")
    assert schema_diff(db_url) == []
    store = Store(db_url)
    try:
        d = store.views.dashboard(DashboardFilter(), NOW)
        assert d.stalled_total == 3 and d.overdue_total == 6 and d.closed_items == 4
        assert store.views.use_link("after-upgrade", NOW + DAY) is True
    finally:
        store.close()
