"""LocalAdapterStorage against real databases: the local tracker's tickets, the notification outbox and the
local calendar, on SQLite and on PostgreSQL (the `local` fixture)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from closeloop.store.local import LocalAdapterStorage
from closeloop.store.tables import NotificationRow, TicketRow
from tests.closeloop.store.helpers import PLUS5, T0, assert_utc, count, ticket

# --------------------------------------------------------------------------- outbox


def test_notifications_outbox(local: LocalAdapterStorage) -> None:
    pid = "postmortem/pagerduty/P1"

    def notify(key: str, at: datetime, postmortem_id: str = pid, item_id: str | None = None) -> bool:
        return local.record_notification(key=key, kind="reminder", recipient="alice", subject=f"subject {key}",
                                         body="body", at=at, postmortem_id=postmortem_id, item_id=item_id)

    assert notify("k-late", T0 + timedelta(days=2)) is True
    assert notify("k-late", T0 + timedelta(days=9)) is False
    assert notify("k-early", (T0 + timedelta(days=1)).astimezone(PLUS5)) is True
    assert notify("k-item", T0 + timedelta(days=3), postmortem_id=f"{pid}/a1", item_id="a1") is True
    assert notify("k-neighbour", T0, postmortem_id="postmortem/pagerduty/P10") is True

    assert count(local.db, NotificationRow.id) == 4
    everything = local.notifications()
    assert [n.key for n in everything] == ["k-neighbour", "k-early", "k-late", "k-item"]
    # a postmortem's notifications include its action items' but not those of a postmortem whose id extends it
    mine = local.notifications(pid)
    assert [n.key for n in mine] == ["k-early", "k-late", "k-item"]
    assert mine[0].at == T0 + timedelta(days=1)
    for n in mine:
        assert_utc(n.at)
        assert_utc(n.sent_at)
    assert [n.key for n in local.notifications("postmortem/pagerduty/P1%")] == []


# --------------------------------------------------------------------------- local tracker


def test_local_tracker(local: LocalAdapterStorage) -> None:
    first = ticket(local, "pm-1/a1")
    again = ticket(local, "pm-1/a1")
    second = ticket(local, "pm-1/a2")

    assert (first.key, again.key, second.key) == ("LOCAL-1", "LOCAL-1", "LOCAL-2")
    assert count(local.db, TicketRow.key) == 2
    assert local.ticket_by_marker("pm-1/a2").key == "LOCAL-2"
    assert local.ticket_by_marker("pm-1/none") is None
    assert first.status == "open"
    assert first.due_at == T0 + timedelta(days=14)

    closed = local.set_ticket_status("LOCAL-1", "done", "fixed")
    assert (closed.status, closed.resolution) == ("done", "fixed")
    assert [(t.key, t.status, t.resolution) for t in local.tickets()] == [
        ("LOCAL-1", "done", "fixed"), ("LOCAL-2", "open", "")]
    assert [t.key for t in local.tickets(["LOCAL-2", "LOCAL-9"])] == ["LOCAL-2"]
    try:
        local.set_ticket_status("LOCAL-9", "done")
    except KeyError:
        pass
    else:
        raise AssertionError("set_ticket_status on an unknown ticket must raise KeyError")

    assert local.add_ticket_comment("LOCAL-1", "Reminder: due soon", "LOCAL-1/reminder/1") is True
    assert local.add_ticket_comment("LOCAL-1", "Reminder: due soon", "LOCAL-1/reminder/1") is False
    assert local.add_ticket_comment("LOCAL-1", "Overdue", "LOCAL-1/overdue") is True
    assert local.ticket_comments("LOCAL-1") == ["Reminder: due soon", "Overdue"]
    assert local.ticket_comments("LOCAL-2") == []


def test_create_ticket_concurrently_with_one_marker(local: LocalAdapterStorage) -> None:
    threads = 8
    barrier = threading.Barrier(threads)
    keys: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            keys.append(ticket(local, "pm-race/a1").key)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)

    assert errors == []
    assert keys == ["LOCAL-1"] * threads
    assert count(local.db, TicketRow.key) == 1


def test_create_ticket_concurrently_with_many_markers(local: LocalAdapterStorage) -> None:
    threads = 8
    barrier = threading.Barrier(threads)
    keys: dict[str, str] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            keys[f"pm-race/a{i}"] = ticket(local, f"pm-race/a{i}").key
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)

    assert errors == []
    assert sorted(keys.values(), key=lambda k: int(k.split("-")[1])) == [f"LOCAL-{i}" for i in range(1, threads + 1)]
    assert {m: local.ticket_by_marker(m).key for m in keys} == keys


# --------------------------------------------------------------------------- local calendar


def test_busy_intervals(local: LocalAdapterStorage) -> None:
    day = T0.replace(hour=0)
    local.book_meeting(idempotency_key="m1", title="Standup", start=day + timedelta(hours=9),
                       end=day + timedelta(hours=9, minutes=30), attendees=["alice", "bob"])
    local.book_meeting(idempotency_key="m-next-day", title="Planning", start=day + timedelta(days=1, hours=9),
                       end=day + timedelta(days=1, hours=10), attendees=["alice"])
    local.add_busy_block("bob", (day + timedelta(hours=13)).astimezone(PLUS5), day + timedelta(hours=15), "focus")
    local.add_busy_block("carol", day + timedelta(hours=10), day + timedelta(hours=11))
    local.add_busy_block("alice", day - timedelta(hours=2), day, "ends when the window starts")

    busy = local.busy_intervals(["alice", "bob", "dana"], day, day + timedelta(days=1))

    assert busy["alice"] == [(day + timedelta(hours=9), day + timedelta(hours=9, minutes=30))]
    assert sorted(busy["bob"]) == [(day + timedelta(hours=9), day + timedelta(hours=9, minutes=30)),
                                   (day + timedelta(hours=13), day + timedelta(hours=15))]
    assert busy["dana"] == []
    assert "carol" not in busy
    for intervals in busy.values():
        for start, end in intervals:
            assert_utc(start)
            assert_utc(end)


def test_book_meeting_is_idempotent(local: LocalAdapterStorage) -> None:
    kw = dict(title="Postmortem review", start=T0, end=T0 + timedelta(hours=1), attendees=["alice"])
    first = local.book_meeting(idempotency_key="pm-1/meeting", **kw)
    assert local.book_meeting(idempotency_key="pm-1/meeting", **kw) == first
    assert local.book_meeting(idempotency_key="pm-2/meeting", **kw) != first


def test_concurrent_bookings_of_one_slot_book_it_once(local: LocalAdapterStorage) -> None:
    """Two lifecycles that pick the same free slot at once: check-and-book is atomic, so one wins and the
    other is told to pick again (None). Booking again under the winner's key returns the same meeting."""
    from concurrent.futures import ThreadPoolExecutor

    start = datetime(2030, 1, 7, 14, tzinfo=UTC)

    def book(i: int) -> int | None:
        return local.book_meeting(idempotency_key=f"pm-{i}/meeting", title="review", start=start,
                                  end=start + timedelta(hours=1), attendees=["alice", f"guest{i}"], require_free=True)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(book, range(8)))
    winners = [i for i, r in enumerate(results) if r is not None]
    assert len(winners) == 1
    assert book(winners[0]) == results[winners[0]]
    later = local.book_meeting(idempotency_key="pm-x/meeting", title="review", start=start + timedelta(hours=1),
                               end=start + timedelta(hours=2), attendees=["alice"], require_free=True)
    assert later is not None  # back-to-back is fine
