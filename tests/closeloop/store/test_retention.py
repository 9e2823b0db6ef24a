"""Retention (closeloop/store/retention.py) on SQLite and PostgreSQL: rows past their retention go in bounded
batches, young rows and the records of lifecycles that have not ended stay, a closed lifecycle goes with every
row that depends on it, and a dry run counts the same rows and deletes none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from closeloop.models import ActionItem, ItemStatus, ReviewDecision, ReviewRecord, TimelineEvent, Verdict
from closeloop.readmodel import AuditEntry
from closeloop.retention import MAX_RATE_WINDOW
from closeloop.store.retention import Cutoffs
from closeloop.store.store import Store
from closeloop.store.tables import (
    ActionItemRow,
    ActionLinkUseRow,
    ChannelDeliveryRow,
    InboxRow,
    IncidentRow,
    IncidentServiceRow,
    MeetingRow,
    NotificationRow,
    PostmortemRow,
    RateEventRow,
    ReviewRow,
    TicketCommentRow,
    TicketRow,
    TimelineEventRow,
    WebAuditRow,
    WebhookDeliveryRow,
)
from tests.closeloop.store.helpers import count, incident

NOW = datetime.now(UTC)
DAY = timedelta(days=1)
KEEP = Cutoffs(at=NOW, deliveries=NOW - 30 * DAY, notifications=NOW - 90 * DAY, rate_events=NOW - 7 * DAY,
               closed_records=NOW - 365 * DAY)


def age(store: Store, row: Any, column: Any, where: Any, when: datetime) -> None:
    """Move rows back in time, as if written at `when` (the store writes them with the wall clock)."""
    with store.db.session() as s:
        s.execute(update(row).where(where).values({column: when}))


def notify(store: Store, key: str, postmortem_id: str = "postmortem/pagerduty/X", item_id: str | None = None) -> None:
    store.local.record_notification(key=key, kind="reminder", recipient="alice", subject="s", body="b", at=NOW,
                                    postmortem_id=postmortem_id, item_id=item_id)


def lifecycle(store: Store, external_id: str, *, stage: str, item_status: str = "done",
              verdict: Verdict | None = Verdict.effective, closed_at: datetime = NOW - 400 * DAY) -> str:
    """A lifecycle's rows as a real one leaves them: incident, services, timeline, postmortem, review, meeting,
    an action item with its local ticket and a comment, notifications; all last written at `closed_at`."""
    pid = f"postmortem/pagerduty/{external_id}"
    inc = incident(external_id, services=["checkout", "search"])
    records = store.records
    records.upsert_postmortem(pid, inc, owner="alice", stage=stage, stalled=False, stage_due_at=None)
    records.add_timeline_events(inc, [TimelineEvent(at=NOW - 401 * DAY, source="incident", kind="detection",
                                                    text="paged"),
                                      TimelineEvent(at=NOW - 401 * DAY, source="incident", kind="resolution",
                                                    text="resolved")])
    records.record_review(pid, ReviewRecord(round=1, reviewer="bob", decision=ReviewDecision.approve, comment="",
                                            at=NOW - 401 * DAY))
    item = ActionItem(id=f"{pid}/item-1", postmortem_id=pid, title="Add a canary", owner="bob",
                      due_at=NOW - 390 * DAY, tracker="local", ticket_key=None,
                      status=ItemStatus(item_status), verdict=verdict)
    ticket = store.local.create_ticket(marker=f"closeloop:{item.id}", title=item.title, body="", assignee="bob",
                                       priority="P2", due_at=item.due_at)
    store.records.upsert_action_item(item.model_copy(update={"ticket_key": ticket.key}))
    store.local.add_ticket_comment(ticket.key, "done", f"{item.id}/comment")
    store.local.book_meeting(idempotency_key=f"{pid}/meeting", title="review", start=NOW - 402 * DAY,
                             end=NOW - 402 * DAY + timedelta(hours=1), attendees=["alice", "bob"])
    notify(store, f"{pid}/invite/bob", pid)
    notify(store, f"{pid}/item-1/reminder", pid, item.id)
    age(store, PostmortemRow, "updated_at", PostmortemRow.id == pid, closed_at)
    age(store, ActionItemRow, "updated_at", ActionItemRow.postmortem_id == pid, closed_at)
    age(store, NotificationRow, "sent_at", NotificationRow.postmortem_id == pid, NOW - 5 * DAY)  # young
    return pid


def counts(store: Store) -> dict[str, int]:
    rows = [WebhookDeliveryRow, NotificationRow, RateEventRow, PostmortemRow, ActionItemRow, ReviewRow, IncidentRow,
            IncidentServiceRow, TimelineEventRow, TicketRow, TicketCommentRow, MeetingRow]
    return {r.__tablename__: count(store.db, r.id if hasattr(r, "id") else r.key) for r in rows
            if r is not IncidentServiceRow} | {"incident_services": count(store.db, IncidentServiceRow.service)}


def test_old_deliveries_outbox_rows_and_rate_events_go_in_batches_young_ones_stay(store: Store) -> None:
    for n in range(5):
        store.deliveries.record_delivery("github", f"old-{n}")
        notify(store, f"old-{n}")
        store.rate_limits.take_rate_slot(f"bucket-{n}", limit=10, window=timedelta(minutes=1),
                                         now=NOW - 8 * DAY)
    age(store, WebhookDeliveryRow, "received_at", WebhookDeliveryRow.delivery_id.startswith("old-"), NOW - 31 * DAY)
    age(store, NotificationRow, "sent_at", NotificationRow.key.startswith("old-"), NOW - 91 * DAY)
    store.deliveries.record_delivery("github", "young")  # within the retention: kept
    store.deliveries.record_delivery("jira", "replayed")
    age(store, WebhookDeliveryRow, "received_at", WebhookDeliveryRow.delivery_id == "replayed", NOW - 31 * DAY)
    assert store.deliveries.record_delivery("jira", "replayed") is False  # seen again: remembered afresh
    notify(store, "young")
    store.rate_limits.take_rate_slot("bucket-young", limit=10, window=timedelta(minutes=1), now=NOW - 6 * DAY)
    for n in range(3):  # what the channels did, aged like the outbox: sent and failed go, a queued one waits
        store.channel_deliveries.sent(f"old-{n}", "email", "alice", "alice@example.com", f"<m{n}@example.com>")
    store.channel_deliveries.failed("old-3", "slack", "alice", "U0ALICE", "user_not_found")
    store.channel_deliveries.queue("old-4", "digest", "alice", "alice")
    store.channel_deliveries.sent("young", "email", "alice", "alice@example.com", "<young@example.com>")
    age(store, ChannelDeliveryRow, "updated_at", ChannelDeliveryRow.key.startswith("old-"), NOW - 91 * DAY)

    dry = store.retention.prune(KEEP, batch_size=2, dry_run=True)
    assert dry.deleted == {"webhook_deliveries": 5, "notifications": 5, "channel_deliveries": 4, "rate_events": 5,
                           "incident_inbox": 0, "web_audit": 0, "action_link_uses": 0} and dry.batches == 0
    assert count(store.db, WebhookDeliveryRow.id) == 7  # a dry run deletes nothing

    heard: list[str] = []
    result = store.retention.prune(KEEP, batch_size=2, progress=heard.append)
    assert result.deleted == dry.deleted and result.total == 19
    assert result.batches == 11 and heard[:3] == ["webhook_deliveries: 2", "webhook_deliveries: 4",
                                                  "webhook_deliveries: 5"]  # 2 + 2 + 1 rows per table
    assert not store.deliveries.delivery_seen("github", "old-0")
    assert store.deliveries.delivery_seen("github", "young") and store.deliveries.delivery_seen("jira", "replayed")
    assert [n.key for n in store.local.notifications()] == ["young"]
    assert count(store.db, RateEventRow.id) == 1
    assert [d.key for d in store.channel_deliveries.of([f"old-{n}" for n in range(5)] + ["young"])] == \
        ["old-4", "young"]  # the queued one waits for its digest
    assert store.retention.prune(KEEP).total == 0  # idempotent: a second run finds nothing


def test_a_closed_lifecycle_goes_with_every_row_that_depends_on_it(store: Store) -> None:
    empty = counts(store)
    closed = lifecycle(store, "P-closed", stage="closed")
    wont_do = lifecycle(store, "P-wontdo", stage="closed", item_status="wont_do", verdict=None)
    skipped = lifecycle(store, "P-skipped", stage="skipped")
    cancelled = lifecycle(store, "P-cancelled", stage="cancelled", item_status="open", verdict=None)
    gone = {closed, wont_do, skipped, cancelled}
    full = counts(store)

    dry = store.retention.prune(KEEP, dry_run=True)
    assert counts(store) == full and dry.lifecycles == 4
    result = store.retention.prune(KEEP, batch_size=3)  # 3 lifecycles, then 1
    assert result.lifecycles == 4 and result.batches == 2
    assert result.deleted == dry.deleted  # the dry run counted exactly what went
    assert counts(store) == empty, "every row of the closed lifecycles goes"
    assert result.deleted["postmortems"] == 4 and result.deleted["incidents"] == 4
    assert result.deleted["timeline_events"] == 8 and result.deleted["local_ticket_comments"] == 4
    assert all(store.records.get_postmortem(p) is None for p in gone)


@pytest.mark.parametrize("case", ["following_up", "drafting", "item_awaiting_verdict", "item_open",
                                  "closed_recently", "item_changed_recently"])
def test_lifecycles_that_have_not_ended_or_ended_recently_stay(store: Store, case: str) -> None:
    old = NOW - 400 * DAY
    kwargs: dict[str, Any] = {
        "following_up": {"stage": "following_up"},
        "drafting": {"stage": "drafting"},
        "item_awaiting_verdict": {"stage": "closed", "verdict": None},  # done, effectiveness not yet judged
        "item_open": {"stage": "closed", "item_status": "open", "verdict": None},
        "closed_recently": {"stage": "closed", "closed_at": NOW - 10 * DAY},
        "item_changed_recently": {"stage": "closed"},
    }[case]
    pid = lifecycle(store, "P-kept", **kwargs)
    if case == "item_changed_recently":
        age(store, ActionItemRow, "updated_at", ActionItemRow.postmortem_id == pid, NOW - DAY)
    closed = lifecycle(store, "P-gone", stage="closed", closed_at=old)
    kept = counts(store)

    result = store.retention.prune(KEEP)
    assert result.lifecycles == 1 and store.records.get_postmortem(closed) is None
    assert store.records.get_postmortem(pid) is not None
    assert store.records.action_items(pid) and store.records.timeline(incident("P-kept"))
    assert store.local.ticket_by_marker(f"closeloop:{pid}/item-1") is not None
    after = counts(store)
    assert all(after[t] * 2 == kept[t] for t in ("postmortems", "action_items", "incidents", "local_tickets"))


def test_closed_lifecycles_are_kept_forever_unless_closed_records_is_set(store: Store) -> None:
    pid = lifecycle(store, "P-old", stage="closed", closed_at=NOW - 3000 * DAY)
    forever = Cutoffs(at=NOW, deliveries=KEEP.deliveries, notifications=KEEP.notifications,
                      rate_events=KEEP.rate_events)
    assert store.retention.prune(forever).lifecycles == 0
    assert store.records.get_postmortem(pid) is not None


def test_forwarded_inbox_rows_go_with_the_delivery_log_pending_and_refused_stay(store: Store) -> None:
    for name in ("old-forwarded", "young-forwarded", "old-pending", "old-refused"):
        store.inbox.receive(incident(name), "pagerduty")
    by_id = {e.incident.external_id: e.id for e in store.inbox.entries(("pending",))}
    store.inbox.forwarded([by_id["old-forwarded"], by_id["young-forwarded"]])
    store.inbox.refuse(by_id["old-refused"], "invalid")
    age(store, InboxRow, "forwarded_at", InboxRow.id == by_id["old-forwarded"], NOW - 31 * DAY)
    age(store, InboxRow, "received_at", InboxRow.id.in_([by_id["old-pending"], by_id["old-refused"]]),
        NOW - 400 * DAY)

    assert store.retention.prune(KEEP).deleted["incident_inbox"] == 1
    assert store.inbox.entry("pagerduty", "old-forwarded") is None
    for name in ("young-forwarded", "old-pending", "old-refused"):
        assert store.inbox.entry("pagerduty", name) is not None, name


def test_a_rate_limit_window_longer_than_retention_allows_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="at most 1 day"):
        store.rate_limits.take_rate_slot("b", limit=1, window=MAX_RATE_WINDOW + timedelta(seconds=1))


def test_the_web_apps_audit_log_expired_action_links_and_closed_lifecycles_autosaves_go(store: Store) -> None:
    views = store.views
    for name, at in (("old", NOW - 91 * DAY), ("young", NOW - 89 * DAY)):  # with the outbox's retention
        views.record_audit(AuditEntry(at=at, person="bob", action="review.approve", target=name, via="web"))
    assert views.use_link("expired", NOW - DAY) and views.use_link("live", NOW + DAY)
    closed = lifecycle(store, "P-closed", stage="closed")
    drafting = lifecycle(store, "P-drafting", stage="drafting")
    for p in (closed, drafting):
        views.save_draft(p, "alice", {"summary": p}, NOW - 400 * DAY)

    dry = store.retention.prune(KEEP, dry_run=True)
    assert (dry.deleted["web_audit"], dry.deleted["action_link_uses"], dry.deleted["draft_autosaves"]) == (1, 1, 1)
    assert count(store.db, WebAuditRow.id) == 2
    result = store.retention.prune(KEEP, batch_size=1)
    assert result.deleted == dry.deleted and result.lifecycles == 1
    assert views.audit("old") == [] and len(views.audit("young")) == 1
    assert count(store.db, ActionLinkUseRow.token_id) == 1 and views.use_link("live", NOW + DAY) is False
    assert views.saved_draft(closed, "alice") is None
    assert views.saved_draft(drafting, "alice") == ({"summary": drafting}, NOW - 400 * DAY)
    assert store.retention.prune(KEEP).total == 0
