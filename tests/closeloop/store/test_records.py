"""LifecycleRecords against real databases: incidents, postmortems, timelines, action items and reviews, on
SQLite and on PostgreSQL (the `records` fixture)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from closeloop.models import ActionItem, ItemStatus, ReviewDecision, ReviewRecord, TimelineEvent, Verdict
from closeloop.store.records import LifecycleRecords
from closeloop.store.tables import IncidentRow
from tests.closeloop.store.helpers import PLUS5, T0, UTC, assert_utc, count, incident, postmortem

# --------------------------------------------------------------------------- incidents


def test_record_incident_is_idempotent_and_updates(records: LifecycleRecords) -> None:
    first = records.record_incident(incident("P1", services=["checkout", "payments"], severity="SEV2"))
    second = records.record_incident(
        incident("P1", services=["checkout", "payments"], title="Checkout is down (EU)", severity="SEV1"),
        postmortem_required=False,
    )

    assert first == second == records.incident_id("pagerduty", "P1")
    assert count(records.db, IncidentRow.id) == 1
    got = records.get_incident("pagerduty", "P1")
    assert got is not None and (got.title, got.severity) == ("Checkout is down (EU)", "SEV1")
    with records.db.session() as s:
        row = s.get(IncidentRow, first)
        assert (row.title, row.severity, row.postmortem_required) == ("Checkout is down (EU)", "SEV1", False)
    assert records.get_incident("pagerduty", "nope") is None
    assert records.incident_id("pagerduty", "nope") is None


def test_record_incident_replaces_services(records: LifecycleRecords) -> None:
    records.record_incident(incident("P1", services=["checkout", "payments"]))
    records.record_incident(incident("P1", services=["checkout", "search"]))
    window = dict(fingerprint="-", since=T0 - timedelta(days=1), until=T0 + timedelta(days=1),
                  exclude=("pagerduty", "other"))

    assert [i.external_id for i in records.similar_incidents(services=["search"], **window)] == ["P1"]
    assert records.similar_incidents(services=["payments"], **window) == []


def test_similar_incidents(records: LifecycleRecords) -> None:
    current = incident("NOW", services=["checkout"], fingerprint="fp-checkout")
    records.record_incident(current)
    records.record_incident(incident("SVC", services=["checkout", "search"], started_at=T0 - timedelta(days=3)))
    records.record_incident(incident("FP", services=["billing"], fingerprint="fp-checkout",
                                     started_at=T0 - timedelta(days=5)))
    records.record_incident(incident("EDGE", services=["checkout"], started_at=T0 - timedelta(days=30)))
    records.record_incident(incident("OLD", services=["checkout"], started_at=T0 - timedelta(days=31)))
    records.record_incident(incident("LATER", services=["checkout"], started_at=T0 + timedelta(seconds=1)))
    records.record_incident(incident("OTHER", services=["billing"], started_at=T0 - timedelta(days=1)))
    records.record_incident(incident("RESOLVED-ONLY", services=["checkout"], started_at=None,
                                     resolved_at=T0 - timedelta(days=2)))

    found = records.similar_incidents(services=current.services, fingerprint=current.fingerprint,
                                      since=T0 - timedelta(days=30), until=T0, exclude=("pagerduty", "NOW"))

    # inclusive window, ordered by when they happened; the incident itself is left out
    assert [i.external_id for i in found] == ["EDGE", "FP", "SVC", "RESOLVED-ONLY"]
    by_service_only = records.similar_incidents(services=["search"], fingerprint="none", since=T0 - timedelta(days=30),
                                                until=T0, exclude=("pagerduty", "NOW"))
    assert [i.external_id for i in by_service_only] == ["SVC"]
    # the window accepts any timezone
    assert [i.external_id for i in records.similar_incidents(
        services=[], fingerprint="fp-checkout", since=(T0 - timedelta(days=5)).astimezone(PLUS5),
        until=T0.astimezone(PLUS5), exclude=("pagerduty", "other"))] == ["FP", "NOW"]


# --------------------------------------------------------------------------- postmortems


def test_upsert_postmortem_and_save_document(records: LifecycleRecords) -> None:
    pid, inc = postmortem(records)
    row = records.get_postmortem(pid)
    assert row is not None
    assert (row.owner, row.stage, row.stalled, row.stage_due_at) == ("alice", "drafting", False, T0)
    assert row.incident_id == records.incident_id(inc.source, inc.external_id)
    assert row.document_ref is None

    records.upsert_postmortem(pid, inc, owner="bob", stage="in_review", stalled=True, stage_due_at=None)
    records.save_document(pid, markdown="# Postmortem", html="<h1>Postmortem</h1>", ref="file://pm.md")

    row = records.get_postmortem(pid)
    assert (row.owner, row.stage, row.stalled, row.stage_due_at) == ("bob", "in_review", True, None)
    assert (row.document_markdown, row.document_html, row.document_ref) == (
        "# Postmortem", "<h1>Postmortem</h1>", "file://pm.md")
    assert count(records.db, IncidentRow.id) == 1
    assert records.get_postmortem("postmortem/pagerduty/missing") is None
    try:
        records.save_document("postmortem/pagerduty/missing", markdown="", html="", ref="")
    except KeyError:
        pass
    else:
        raise AssertionError("save_document on an unknown postmortem must raise KeyError")


# --------------------------------------------------------------------------- timeline


def test_timeline_dedups_and_sorts(records: LifecycleRecords) -> None:
    inc = incident("P1", services=["checkout"])
    resolved = TimelineEvent(at=T0 + timedelta(hours=1), source="pagerduty", kind="resolution", text="Resolved")
    detected = TimelineEvent(at=T0, source="pagerduty", kind="detection", text="Alert fired", key_moment=True)
    deploy = TimelineEvent(at=T0 + timedelta(minutes=20), source="github", kind="deploy", text="Rollback  v1.2",
                           actor="carol", url="https://example.test/deploy/1")

    assert records.add_timeline_events(inc, [resolved, detected]) == 2
    # the same events again (same time, kind and text, even spelled with other case, spacing or offset) add nothing
    again = [
        TimelineEvent(at=T0.astimezone(PLUS5), source="slack", kind="detection", text="alert   FIRED"),
        resolved,
        deploy,
    ]
    assert records.add_timeline_events(inc, again) == 1
    assert records.add_timeline_events(inc, [deploy]) == 0
    note = TimelineEvent(at=T0 + timedelta(minutes=5), source="cli", kind="note", text="Paged the DB team")
    assert records.add_timeline_events(inc, [note], notes=True) == 1

    events = records.timeline(inc)
    assert [e.kind for e in events] == ["detection", "note", "deploy", "resolution"]
    assert [e.at for e in events] == sorted(e.at for e in events)
    for e in events:
        assert_utc(e.at)
    assert events[0] == detected
    assert events[2] == deploy
    assert records.timeline(inc, notes_only=True) == [note]
    assert records.timeline(incident("P2")) == []


# --------------------------------------------------------------------------- action items and reviews


def test_action_items_round_trip_and_filter(records: LifecycleRecords) -> None:
    pid, _ = postmortem(records)
    other_pid, _ = postmortem(records, "postmortem/pagerduty/P2")
    a = ActionItem(id=f"{pid}/a1", postmortem_id=pid, title="Add a canary", description="for checkout",
                   owner="bob", priority="P1", kind="detect", due_at=(T0 + timedelta(days=7)).astimezone(PLUS5),
                   ticket_key="LOCAL-1", ticket_url="local://LOCAL-1", recurrences=["pagerduty:P9"])
    b = ActionItem(id=f"{pid}/a2", postmortem_id=pid, title="Runbook", owner="carol", due_at=T0 + timedelta(days=30))
    c = ActionItem(id=f"{other_pid}/a1", postmortem_id=other_pid, title="Alert on lag", owner="bob",
                   due_at=T0 + timedelta(days=30))
    for item in (a, b, c):
        records.upsert_action_item(item)

    assert records.action_items(pid) == [a, b]
    assert records.action_items() == [a, b, c]

    done = a.model_copy(update=dict(status=ItemStatus.done, completed_at=T0 + timedelta(days=6),
                                    verdict=Verdict.effective, verdict_note="no recurrence"))
    records.upsert_action_item(done)

    assert records.action_items(pid) == [done, b]
    assert records.action_items(status="done") == [done]
    assert records.action_items(status="open") == [b, c]
    assert records.action_items(pid, status="open") == [b]
    assert records.action_items(status="wont_do") == []
    assert_utc(records.action_items(status="done")[0].due_at.astimezone(UTC))


def test_record_review_is_idempotent(records: LifecycleRecords) -> None:
    pid, _ = postmortem(records)
    vote = ReviewRecord(round=1, reviewer="dana", decision=ReviewDecision.request_changes, comment="more detail",
                        at=T0)

    assert records.record_review(pid, vote) is True
    assert records.record_review(pid, vote.model_copy(update=dict(decision=ReviewDecision.approve))) is False
    assert records.record_review(pid, vote.model_copy(update=dict(reviewer="erin"))) is True
    assert records.record_review(pid, vote.model_copy(update=dict(round=2, decision=ReviewDecision.approve,
                                                                  at=T0 + timedelta(days=1)))) is True

    rows = records.reviews(pid)
    assert [(r.round, r.reviewer, r.decision) for r in rows] == [
        (1, "dana", "request_changes"), (1, "erin", "request_changes"), (2, "dana", "approve")]
    assert rows[0].at == T0
    assert_utc(rows[0].at)


# --------------------------------------------------------------------------- tracker sync support


def test_action_item_by_ticket_and_tracked_items(records: LifecycleRecords) -> None:
    pid, _ = postmortem(records)
    due = T0 + timedelta(days=7)
    open_jira = ActionItem(id=f"{pid}/item-1", postmortem_id=pid, title="a", owner="bob", due_at=due,
                           tracker="jira", ticket_key="OPS-1")
    open_gh = ActionItem(id=f"{pid}/item-2", postmortem_id=pid, title="b", owner="bob", due_at=due,
                         tracker="github", ticket_key="acme/api#7")
    done_waiting = ActionItem(id=f"{pid}/item-3", postmortem_id=pid, title="c", owner="bob", due_at=due,
                              tracker="jira", ticket_key="OPS-3", status=ItemStatus.done, completed_at=due)
    judged = done_waiting.model_copy(update=dict(id=f"{pid}/item-4", ticket_key="OPS-4", verdict=Verdict.effective))
    wont = open_jira.model_copy(update=dict(id=f"{pid}/item-5", ticket_key="OPS-5", status=ItemStatus.wont_do))
    no_ticket = open_jira.model_copy(update=dict(id=f"{pid}/item-6", ticket_key=None))
    for item in (open_jira, open_gh, done_waiting, judged, wont, no_ticket):
        records.upsert_action_item(item)

    assert records.action_item_by_ticket("jira", "OPS-1") == open_jira
    assert records.action_item_by_ticket("github", "acme/api#7") == open_gh
    assert records.action_item_by_ticket("github", "OPS-1") is None  # same key, other tracker
    assert records.action_item_by_ticket("jira", "OPS-99") is None
    assert [i.id for i in records.tracked_items()] == [open_gh.id, open_jira.id, done_waiting.id]



def test_ticket_event_keeps_the_newest_time_and_never_moves_back(records: LifecycleRecords) -> None:
    """The order of ticket status webhooks (closeloop/web/ticket_status.py): the vendor's time of the newest one
    applied, recorded only when newer, across UTC offsets, and kept when the workflow saves the item again."""
    pid, _ = postmortem(records)
    item = ActionItem(id=f"{pid}/item-1", postmortem_id=pid, title="a", owner="bob", due_at=T0 + timedelta(days=7),
                      tracker="jira", ticket_key="OPS-1")
    records.upsert_action_item(item)
    closed, reopened = T0 + timedelta(minutes=1, microseconds=250_000), T0 + timedelta(minutes=2)

    assert records.ticket_event(item.id) is None
    assert records.record_ticket_event(item.id, closed, "done") is True
    assert records.ticket_event(item.id) == (closed, "done")
    assert records.record_ticket_event(item.id, reopened, "reopened") is True
    records.upsert_action_item(item.model_copy(update={"status": ItemStatus.open}))  # the workflow saves it
    known = records.ticket_event(item.id)
    assert known == (reopened, "reopened")
    assert_utc(known[0])
    # older, as old (in another offset, and with another status): not recorded
    assert records.record_ticket_event(item.id, closed, "done") is False
    assert records.record_ticket_event(item.id, reopened.astimezone(PLUS5), "done") is False
    assert records.record_ticket_event(item.id, reopened - timedelta(microseconds=1), "done") is False
    assert records.ticket_event(item.id) == (reopened, "reopened")
    assert records.record_ticket_event(f"{pid}/item-9", reopened, "done") is False  # no such item
    assert records.ticket_event(f"{pid}/item-9") is None


def test_concurrent_ticket_events_leave_the_newest(records: LifecycleRecords) -> None:
    """Deliveries recorded at the same moment (several web processes): whatever the order, the newest stays."""
    pid, _ = postmortem(records)
    item = ActionItem(id=f"{pid}/item-1", postmortem_id=pid, title="a", owner="bob", due_at=T0 + timedelta(days=7),
                      tracker="jira", ticket_key="OPS-1")
    records.upsert_action_item(item)
    times = [T0 + timedelta(seconds=(n * 7) % 24) for n in range(24)]  # 0..23 s, shuffled
    barrier = threading.Barrier(8)

    def record(chunk: list[datetime]) -> list[bool]:
        barrier.wait()
        return [records.record_ticket_event(item.id, at, "done" if at.second % 2 else "reopened") for at in chunk]

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(record, [times[i::8] for i in range(8)]) for r in rs]
    assert records.ticket_event(item.id) == (max(times), "done")
    assert 1 <= sum(results) < len(times)
