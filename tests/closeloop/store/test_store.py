"""The store against real databases: every test runs on SQLite and on PostgreSQL (the `store` fixture)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from closeloop.models import (
    ActionItem,
    Incident,
    ItemStatus,
    ReviewDecision,
    ReviewRecord,
    TimelineEvent,
    Verdict,
)
from closeloop.store.store import Store
from closeloop.store.tables import IncidentRow, NotificationRow, TicketRow

UTC = timezone.utc
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
PLUS5 = timezone(timedelta(hours=5))


def incident(external_id: str, *, services: list[str] | None = None, started_at: datetime | None = T0,
             title: str = "Checkout is down", fingerprint: str = "", **extra) -> Incident:
    extra.setdefault("resolved_at", started_at + timedelta(hours=1) if started_at else None)
    return Incident(source="pagerduty", external_id=external_id, title=title, services=services or [],
                    started_at=started_at, fingerprint=fingerprint, **extra)


def count(store: Store, column) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(column.table))


def assert_utc(value: datetime) -> None:
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0), value


def postmortem(store: Store, pid: str = "postmortem/pagerduty/P1") -> tuple[str, Incident]:
    inc = incident(pid.rsplit("/", 1)[-1], services=["checkout"])
    store.upsert_postmortem(pid, inc, owner="alice", stage="drafting", stalled=False, stage_due_at=T0)
    return pid, inc


def ticket(store: Store, marker: str) -> TicketRow:
    return store.create_ticket(marker=marker, title=f"Fix {marker}", body="details", assignee="bob", priority="P2",
                               due_at=T0 + timedelta(days=14))


# --------------------------------------------------------------------------- incidents


def test_record_incident_is_idempotent_and_updates(store: Store) -> None:
    first = store.record_incident(incident("P1", services=["checkout", "payments"], severity="SEV2"))
    second = store.record_incident(
        incident("P1", services=["checkout", "payments"], title="Checkout is down (EU)", severity="SEV1"),
        postmortem_required=False,
    )

    assert first == second == store.incident_id("pagerduty", "P1")
    assert count(store, IncidentRow.id) == 1
    got = store.get_incident("pagerduty", "P1")
    assert got is not None and (got.title, got.severity) == ("Checkout is down (EU)", "SEV1")
    with store.session() as s:
        row = s.get(IncidentRow, first)
        assert (row.title, row.severity, row.postmortem_required) == ("Checkout is down (EU)", "SEV1", False)
    assert store.get_incident("pagerduty", "nope") is None
    assert store.incident_id("pagerduty", "nope") is None


def test_record_incident_replaces_services(store: Store) -> None:
    store.record_incident(incident("P1", services=["checkout", "payments"]))
    store.record_incident(incident("P1", services=["checkout", "search"]))
    window = dict(fingerprint="-", since=T0 - timedelta(days=1), until=T0 + timedelta(days=1),
                  exclude=("pagerduty", "other"))

    assert [i.external_id for i in store.similar_incidents(services=["search"], **window)] == ["P1"]
    assert store.similar_incidents(services=["payments"], **window) == []


def test_similar_incidents(store: Store) -> None:
    current = incident("NOW", services=["checkout"], fingerprint="fp-checkout")
    store.record_incident(current)
    store.record_incident(incident("SVC", services=["checkout", "search"], started_at=T0 - timedelta(days=3)))
    store.record_incident(incident("FP", services=["billing"], fingerprint="fp-checkout",
                                   started_at=T0 - timedelta(days=5)))
    store.record_incident(incident("EDGE", services=["checkout"], started_at=T0 - timedelta(days=30)))
    store.record_incident(incident("OLD", services=["checkout"], started_at=T0 - timedelta(days=31)))
    store.record_incident(incident("LATER", services=["checkout"], started_at=T0 + timedelta(seconds=1)))
    store.record_incident(incident("OTHER", services=["billing"], started_at=T0 - timedelta(days=1)))
    store.record_incident(incident("RESOLVED-ONLY", services=["checkout"], started_at=None,
                                   resolved_at=T0 - timedelta(days=2)))

    found = store.similar_incidents(services=current.services, fingerprint=current.fingerprint,
                                    since=T0 - timedelta(days=30), until=T0, exclude=("pagerduty", "NOW"))

    # inclusive window, ordered by when they happened; the incident itself is left out
    assert [i.external_id for i in found] == ["EDGE", "FP", "SVC", "RESOLVED-ONLY"]
    by_service_only = store.similar_incidents(services=["search"], fingerprint="none", since=T0 - timedelta(days=30),
                                              until=T0, exclude=("pagerduty", "NOW"))
    assert [i.external_id for i in by_service_only] == ["SVC"]
    # the window accepts any timezone
    assert [i.external_id for i in store.similar_incidents(
        services=[], fingerprint="fp-checkout", since=(T0 - timedelta(days=5)).astimezone(PLUS5),
        until=T0.astimezone(PLUS5), exclude=("pagerduty", "other"))] == ["FP", "NOW"]


# --------------------------------------------------------------------------- postmortems


def test_upsert_postmortem_and_save_document(store: Store) -> None:
    pid, inc = postmortem(store)
    row = store.get_postmortem(pid)
    assert row is not None
    assert (row.owner, row.stage, row.stalled, row.stage_due_at) == ("alice", "drafting", False, T0)
    assert row.incident_id == store.incident_id(inc.source, inc.external_id)
    assert row.document_ref is None

    store.upsert_postmortem(pid, inc, owner="bob", stage="in_review", stalled=True, stage_due_at=None)
    store.save_document(pid, markdown="# Postmortem", html="<h1>Postmortem</h1>", ref="file://pm.md")

    row = store.get_postmortem(pid)
    assert (row.owner, row.stage, row.stalled, row.stage_due_at) == ("bob", "in_review", True, None)
    assert (row.document_markdown, row.document_html, row.document_ref) == (
        "# Postmortem", "<h1>Postmortem</h1>", "file://pm.md")
    assert count(store, IncidentRow.id) == 1
    assert store.get_postmortem("postmortem/pagerduty/missing") is None
    try:
        store.save_document("postmortem/pagerduty/missing", markdown="", html="", ref="")
    except KeyError:
        pass
    else:
        raise AssertionError("save_document on an unknown postmortem must raise KeyError")


# --------------------------------------------------------------------------- timeline


def test_timeline_dedups_and_sorts(store: Store) -> None:
    inc = incident("P1", services=["checkout"])
    resolved = TimelineEvent(at=T0 + timedelta(hours=1), source="pagerduty", kind="resolution", text="Resolved")
    detected = TimelineEvent(at=T0, source="pagerduty", kind="detection", text="Alert fired", key_moment=True)
    deploy = TimelineEvent(at=T0 + timedelta(minutes=20), source="github", kind="deploy", text="Rollback  v1.2",
                           actor="carol", url="https://example.test/deploy/1")

    assert store.add_timeline_events(inc, [resolved, detected]) == 2
    # the same events again (same time, kind and text, even spelled with other case, spacing or offset) add nothing
    again = [
        TimelineEvent(at=T0.astimezone(PLUS5), source="slack", kind="detection", text="alert   FIRED"),
        resolved,
        deploy,
    ]
    assert store.add_timeline_events(inc, again) == 1
    assert store.add_timeline_events(inc, [deploy]) == 0
    note = TimelineEvent(at=T0 + timedelta(minutes=5), source="cli", kind="note", text="Paged the DB team")
    assert store.add_timeline_events(inc, [note], notes=True) == 1

    events = store.timeline(inc)
    assert [e.kind for e in events] == ["detection", "note", "deploy", "resolution"]
    assert [e.at for e in events] == sorted(e.at for e in events)
    for e in events:
        assert_utc(e.at)
    assert events[0] == detected
    assert events[2] == deploy
    assert store.timeline(inc, notes_only=True) == [note]
    assert store.timeline(incident("P2")) == []


# --------------------------------------------------------------------------- action items and reviews


def test_action_items_round_trip_and_filter(store: Store) -> None:
    pid, _ = postmortem(store)
    other_pid, _ = postmortem(store, "postmortem/pagerduty/P2")
    a = ActionItem(id=f"{pid}/a1", postmortem_id=pid, title="Add a canary", description="for checkout",
                   owner="bob", priority="P1", kind="detect", due_at=(T0 + timedelta(days=7)).astimezone(PLUS5),
                   ticket_key="LOCAL-1", ticket_url="local://LOCAL-1", recurrences=["pagerduty:P9"])
    b = ActionItem(id=f"{pid}/a2", postmortem_id=pid, title="Runbook", owner="carol", due_at=T0 + timedelta(days=30))
    c = ActionItem(id=f"{other_pid}/a1", postmortem_id=other_pid, title="Alert on lag", owner="bob",
                   due_at=T0 + timedelta(days=30))
    for item in (a, b, c):
        store.upsert_action_item(item)

    assert store.action_items(pid) == [a, b]
    assert store.action_items() == [a, b, c]

    done = a.model_copy(update=dict(status=ItemStatus.done, completed_at=T0 + timedelta(days=6),
                                    verdict=Verdict.effective, verdict_note="no recurrence"))
    store.upsert_action_item(done)

    assert store.action_items(pid) == [done, b]
    assert store.action_items(status="done") == [done]
    assert store.action_items(status="open") == [b, c]
    assert store.action_items(pid, status="open") == [b]
    assert store.action_items(status="wont_do") == []
    assert_utc(store.action_items(status="done")[0].due_at.astimezone(UTC))


def test_record_review_is_idempotent(store: Store) -> None:
    pid, _ = postmortem(store)
    vote = ReviewRecord(round=1, reviewer="dana", decision=ReviewDecision.request_changes, comment="more detail",
                        at=T0)

    assert store.record_review(pid, vote) is True
    assert store.record_review(pid, vote.model_copy(update=dict(decision=ReviewDecision.approve))) is False
    assert store.record_review(pid, vote.model_copy(update=dict(reviewer="erin"))) is True
    assert store.record_review(pid, vote.model_copy(update=dict(round=2, decision=ReviewDecision.approve,
                                                                at=T0 + timedelta(days=1)))) is True

    rows = store.reviews(pid)
    assert [(r.round, r.reviewer, r.decision) for r in rows] == [
        (1, "dana", "request_changes"), (1, "erin", "request_changes"), (2, "dana", "approve")]
    assert rows[0].at == T0
    assert_utc(rows[0].at)


# --------------------------------------------------------------------------- outbox


def test_notifications_outbox(store: Store) -> None:
    pid = "postmortem/pagerduty/P1"

    def notify(key: str, at: datetime, postmortem_id: str = pid, item_id: str | None = None) -> bool:
        return store.record_notification(key=key, kind="reminder", recipient="alice", subject=f"subject {key}",
                                         body="body", at=at, postmortem_id=postmortem_id, item_id=item_id)

    assert notify("k-late", T0 + timedelta(days=2)) is True
    assert notify("k-late", T0 + timedelta(days=9)) is False
    assert notify("k-early", (T0 + timedelta(days=1)).astimezone(PLUS5)) is True
    assert notify("k-item", T0 + timedelta(days=3), postmortem_id=f"{pid}/a1", item_id="a1") is True
    assert notify("k-neighbour", T0, postmortem_id="postmortem/pagerduty/P10") is True

    assert count(store, NotificationRow.id) == 4
    everything = store.notifications()
    assert [n.key for n in everything] == ["k-neighbour", "k-early", "k-late", "k-item"]
    # a postmortem's notifications include its action items' but not those of a postmortem whose id extends it
    mine = store.notifications(pid)
    assert [n.key for n in mine] == ["k-early", "k-late", "k-item"]
    assert mine[0].at == T0 + timedelta(days=1)
    for n in mine:
        assert_utc(n.at)
        assert_utc(n.sent_at)
    assert [n.key for n in store.notifications("postmortem/pagerduty/P1%")] == []


# --------------------------------------------------------------------------- local tracker


def test_local_tracker(store: Store) -> None:
    first = ticket(store, "pm-1/a1")
    again = ticket(store, "pm-1/a1")
    second = ticket(store, "pm-1/a2")

    assert (first.key, again.key, second.key) == ("LOCAL-1", "LOCAL-1", "LOCAL-2")
    assert count(store, TicketRow.key) == 2
    assert store.ticket_by_marker("pm-1/a2").key == "LOCAL-2"
    assert store.ticket_by_marker("pm-1/none") is None
    assert first.status == "open"
    assert first.due_at == T0 + timedelta(days=14)

    closed = store.set_ticket_status("LOCAL-1", "done", "fixed")
    assert (closed.status, closed.resolution) == ("done", "fixed")
    assert [(t.key, t.status, t.resolution) for t in store.tickets()] == [
        ("LOCAL-1", "done", "fixed"), ("LOCAL-2", "open", "")]
    assert [t.key for t in store.tickets(["LOCAL-2", "LOCAL-9"])] == ["LOCAL-2"]
    try:
        store.set_ticket_status("LOCAL-9", "done")
    except KeyError:
        pass
    else:
        raise AssertionError("set_ticket_status on an unknown ticket must raise KeyError")

    assert store.add_ticket_comment("LOCAL-1", "Reminder: due soon", "LOCAL-1/reminder/1") is True
    assert store.add_ticket_comment("LOCAL-1", "Reminder: due soon", "LOCAL-1/reminder/1") is False
    assert store.add_ticket_comment("LOCAL-1", "Overdue", "LOCAL-1/overdue") is True
    assert store.ticket_comments("LOCAL-1") == ["Reminder: due soon", "Overdue"]
    assert store.ticket_comments("LOCAL-2") == []


def test_create_ticket_concurrently_with_one_marker(store: Store) -> None:
    threads = 8
    barrier = threading.Barrier(threads)
    keys: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            keys.append(ticket(store, "pm-race/a1").key)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)

    assert errors == []
    assert keys == ["LOCAL-1"] * threads
    assert count(store, TicketRow.key) == 1


def test_create_ticket_concurrently_with_many_markers(store: Store) -> None:
    threads = 8
    barrier = threading.Barrier(threads)
    keys: dict[str, str] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            keys[f"pm-race/a{i}"] = ticket(store, f"pm-race/a{i}").key
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)

    assert errors == []
    assert sorted(keys.values(), key=lambda k: int(k.split("-")[1])) == [f"LOCAL-{i}" for i in range(1, threads + 1)]
    assert {m: store.ticket_by_marker(m).key for m in keys} == keys


# --------------------------------------------------------------------------- local calendar


def test_busy_intervals(store: Store) -> None:
    day = T0.replace(hour=0)
    store.book_meeting(idempotency_key="m1", title="Standup", start=day + timedelta(hours=9),
                       end=day + timedelta(hours=9, minutes=30), attendees=["alice", "bob"])
    store.book_meeting(idempotency_key="m-next-day", title="Planning", start=day + timedelta(days=1, hours=9),
                       end=day + timedelta(days=1, hours=10), attendees=["alice"])
    store.add_busy_block("bob", (day + timedelta(hours=13)).astimezone(PLUS5), day + timedelta(hours=15), "focus")
    store.add_busy_block("carol", day + timedelta(hours=10), day + timedelta(hours=11))
    store.add_busy_block("alice", day - timedelta(hours=2), day, "ends when the window starts")

    busy = store.busy_intervals(["alice", "bob", "dana"], day, day + timedelta(days=1))

    assert busy["alice"] == [(day + timedelta(hours=9), day + timedelta(hours=9, minutes=30))]
    assert sorted(busy["bob"]) == [(day + timedelta(hours=9), day + timedelta(hours=9, minutes=30)),
                                   (day + timedelta(hours=13), day + timedelta(hours=15))]
    assert busy["dana"] == []
    assert "carol" not in busy
    for intervals in busy.values():
        for start, end in intervals:
            assert_utc(start)
            assert_utc(end)


def test_book_meeting_is_idempotent(store: Store) -> None:
    kw = dict(title="Postmortem review", start=T0, end=T0 + timedelta(hours=1), attendees=["alice"])
    first = store.book_meeting(idempotency_key="pm-1/meeting", **kw)
    assert store.book_meeting(idempotency_key="pm-1/meeting", **kw) == first
    assert store.book_meeting(idempotency_key="pm-2/meeting", **kw) != first


# --------------------------------------------------------------------------- datetimes


def test_datetimes_come_back_aware_utc(store: Store) -> None:
    local = T0.astimezone(PLUS5)
    naive = datetime(2025, 3, 10, 12, 0)  # naive values are taken as UTC
    inc = incident("P1", started_at=local)
    store.record_incident(inc)
    store.upsert_postmortem("postmortem/pagerduty/P1", inc, owner="alice", stage="drafting", stalled=False,
                            stage_due_at=naive)
    t = store.create_ticket(marker="m", title="t", body="b", assignee="a", priority="P3", due_at=local)

    with store.session() as s:
        row = s.scalar(select(IncidentRow).where(IncidentRow.external_id == "P1"))
        values = [row.started_at, row.resolved_at, row.recorded_at]
    pm = store.get_postmortem("postmortem/pagerduty/P1")
    values += [pm.stage_due_at, pm.updated_at]
    (fresh,) = store.tickets()
    values += [fresh.due_at, fresh.created_at, fresh.updated_at]

    for value in values:
        assert_utc(value)
    assert row.started_at == T0 and row.started_at.tzinfo == UTC
    assert row.resolved_at == T0 + timedelta(hours=1)
    assert pm.stage_due_at == T0
    assert fresh.due_at == T0 == t.due_at
    assert abs(datetime.now(UTC) - row.recorded_at) < timedelta(minutes=5)


def test_concurrent_bookings_of_one_slot_book_it_once(store: Store) -> None:
    """Two lifecycles that pick the same free slot at once: check-and-book is atomic, so one wins and the
    other is told to pick again (None). Booking again under the winner's key returns the same meeting."""
    from concurrent.futures import ThreadPoolExecutor

    start = datetime(2030, 1, 7, 14, tzinfo=timezone.utc)

    def book(i: int) -> int | None:
        return store.book_meeting(idempotency_key=f"pm-{i}/meeting", title="review", start=start,
                                  end=start + timedelta(hours=1), attendees=["alice", f"guest{i}"], require_free=True)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(book, range(8)))
    winners = [i for i, r in enumerate(results) if r is not None]
    assert len(winners) == 1
    assert book(winners[0]) == results[winners[0]]
    later = store.book_meeting(idempotency_key="pm-x/meeting", title="review", start=start + timedelta(hours=1),
                               end=start + timedelta(hours=2), attendees=["alice"], require_free=True)
    assert later is not None  # back-to-back is fine


# --------------------------------------------------------------------------- tracker sync support


def test_action_item_by_ticket_and_tracked_items(store: Store) -> None:
    pid, _ = postmortem(store)
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
        store.upsert_action_item(item)

    assert store.action_item_by_ticket("jira", "OPS-1") == open_jira
    assert store.action_item_by_ticket("github", "acme/api#7") == open_gh
    assert store.action_item_by_ticket("github", "OPS-1") is None  # same key, other tracker
    assert store.action_item_by_ticket("jira", "OPS-99") is None
    assert [i.id for i in store.tracked_items()] == [open_gh.id, open_jira.id, done_waiting.id]


def test_record_delivery_once(store: Store) -> None:
    assert store.record_delivery("github", "d-1") is True
    assert store.record_delivery("github", "d-1") is False
    assert store.record_delivery("jira", "d-1") is True  # delivery ids are per source


def test_delivery_recorded_only_looks(store: Store) -> None:
    assert store.delivery_recorded("sweep", "k-1") is False
    assert store.delivery_recorded("sweep", "k-1") is False  # looking records nothing
    assert store.record_delivery("sweep", "k-1") is True
    assert store.delivery_recorded("sweep", "k-1") is True
    assert store.delivery_recorded("github", "k-1") is False  # per source


def test_take_rate_slot_counts_within_the_window(store: Store) -> None:
    window = timedelta(minutes=1)
    for i in range(3):
        assert store.take_rate_slot("gh", limit=3, window=window, now=T0 + timedelta(seconds=i)) == 0
    wait = store.take_rate_slot("gh", limit=3, window=window, now=T0 + timedelta(seconds=10))
    assert wait == 50.0  # the oldest of the last 3 (at 0 s) leaves the window at 60 s
    assert store.take_rate_slot("other", limit=3, window=window, now=T0 + timedelta(seconds=10)) == 0
    assert store.take_rate_slot("gh", limit=3, window=window, now=T0 + timedelta(seconds=60)) == 0
    wait = store.take_rate_slot("gh", limit=3, window=window, now=T0 + timedelta(seconds=60.5))
    assert wait == 0.5  # slots at 1, 2 and 60 s: the one at 1 s frees at 61 s


def test_take_rate_slot_holds_across_processes(db_url: str) -> None:
    """Four Store objects (as four worker processes would have) race for 10 slots: exactly 10 are granted."""
    from concurrent.futures import ThreadPoolExecutor

    stores = [Store(db_url) for _ in range(4)]
    try:
        def take(i: int) -> float:
            return stores[i % 4].take_rate_slot("github/create", limit=10, window=timedelta(minutes=1), now=T0)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(take, range(40)))
    finally:
        for s in stores:
            s.close()
    assert results.count(0.0) == 10
    assert all(r == 60.0 for r in results if r)
