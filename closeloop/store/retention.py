"""Retention: deleting what the store no longer needs, in bounded batches (one transaction each), so the
database stops growing with every lifecycle. The Schedule's RetentionWorkflow (activities/retention.py) and
`closeloop db prune` both run `Retention.prune`; how long each kind of row is kept is `[retention]`
(closeloop/retention.py has the floors).

What goes, once older than its cutoff:
  - webhook deliveries (by `received_at`; a delivery seen again is refreshed, see DeliveryLog.record_delivery),
  - notification outbox rows (by `sent_at`),
  - rate events (by `at`),
  - incident inbox rows whose lifecycle was started (by `forwarded_at`, with the deliveries' cutoff; pending
    and refused rows stay until they are dealt with),
  - the web app's audit log (by `at`, with the notifications' cutoff),
  - used action links once expired (by `expires_at`: an expired link is refused before its use is looked up),
  - closed lifecycles, only when `closed_records` is set: a postmortem whose stage is terminal (closed,
    skipped, cancelled) and unchanged since the cutoff, whose action items are all terminal (won't do, or
    done with a verdict; a cancelled lifecycle's items ended with it) and unchanged since the cutoff. Its
    workflow has ended (a lifecycle ends on entering a terminal stage; its items are its child workflows and
    end with it), so nothing running writes these rows again. Deleted with it, children first (the foreign
    keys): its reviews, action items, their local tickets and comments, its local meeting, notifications and
    draft autosaves, and its incident with the incident's services and timeline events.

Idempotent: a retry (or a second run) deletes what is left and finds nothing more."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, CursorResult, and_, delete, exists, func, not_, or_, select
from sqlalchemy.orm import Session

from closeloop.models import PruneResult
from closeloop.store.database import Database
from closeloop.store.tables import (
    ActionItemRow,
    ActionLinkUseRow,
    ChannelDeliveryRow,
    DraftAutosaveRow,
    InboxRow,
    IncidentRow,
    IncidentServiceRow,
    ItemRecurrenceRow,
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

TERMINAL_STAGES = ("closed", "skipped", "cancelled")
LIFECYCLES_PER_BATCH = 200  # bounds the IN lists (SQLite allows 32,766 parameters per statement)


class RetentionDurations(Protocol):
    """What the prune needs of `[retention]` (closeloop.config.RetentionSettings)."""

    deliveries: timedelta
    notifications: timedelta
    rate_events: timedelta
    closed_records: timedelta | None


@dataclass(frozen=True)
class Cutoffs:
    """Rows older than these go; `closed_records` None keeps every lifecycle."""

    at: datetime
    deliveries: datetime
    notifications: datetime
    rate_events: datetime
    closed_records: datetime | None = None

    @classmethod
    def of(cls, keep: RetentionDurations, at: datetime) -> Cutoffs:
        return cls(at=at, deliveries=at - keep.deliveries, notifications=at - keep.notifications,
                   rate_events=at - keep.rate_events,
                   closed_records=at - keep.closed_records if keep.closed_records is not None else None)


Progress = Callable[[str], None]


def _rowcount(result: Any) -> int:
    """Rows a DELETE removed (a CursorResult's rowcount)."""
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


class Retention:
    def __init__(self, db: Database) -> None:
        self.db = db

    def prune(self, cutoffs: Cutoffs, *, batch_size: int = 1000, dry_run: bool = False,
              progress: Progress | None = None) -> PruneResult:
        """Delete every row past its cutoff, `batch_size` rows (or up to 200 lifecycles) per transaction;
        `progress` hears after each batch (the activity heartbeats). A dry run counts and deletes nothing."""
        result = PruneResult(at=cutoffs.at, dry_run=dry_run)
        tell = progress or (lambda _: None)
        aged: list[tuple[Any, ColumnElement[bool]]] = [
            (WebhookDeliveryRow, WebhookDeliveryRow.received_at < cutoffs.deliveries),
            (NotificationRow, NotificationRow.sent_at < cutoffs.notifications),
            # what the channels did with them, as long as the outbox; what still waits (queued for a digest,
            # sending) stays
            (ChannelDeliveryRow, and_(ChannelDeliveryRow.status.in_(["sent", "failed"]),
                                      ChannelDeliveryRow.updated_at < cutoffs.notifications)),
            (RateEventRow, RateEventRow.at < cutoffs.rate_events),
            # inbox rows whose lifecycle started, as long as the delivery log's: a repeat after that is answered
            # "new" again, and its start finds the workflow id taken (no second lifecycle)
            (InboxRow, and_(InboxRow.state == "forwarded", InboxRow.forwarded_at < cutoffs.deliveries)),
            # the web app's audit log, as long as the outbox
            (WebAuditRow, WebAuditRow.at < cutoffs.notifications),
            # used action links, once the link has expired (it is refused as expired before its use is checked)
            (ActionLinkUseRow, ActionLinkUseRow.expires_at < cutoffs.at),
        ]
        for row, where in aged:
            name = row.__tablename__
            key = row.__mapper__.primary_key[0]  # one-column keys: `id`, or action_link_uses' `token_id`
            if dry_run:
                with self.db.session() as s:
                    result.deleted[name] = s.scalar(select(func.count()).select_from(row).where(where)) or 0
                continue
            result.deleted[name] = 0
            while True:
                with self.db.session() as s:
                    ids = select(key).where(where).order_by(key).limit(batch_size)
                    n = _rowcount(s.execute(delete(row).where(key.in_(ids))))
                if not n:
                    break
                result.deleted[name] += n
                result.batches += 1
                tell(f"{name}: {result.deleted[name]}")
                if n < batch_size:
                    break
        if cutoffs.closed_records is not None:
            self._prune_lifecycles(cutoffs.closed_records, result, min(batch_size, LIFECYCLES_PER_BATCH), tell)
        return result

    # ------------------------------------------------------------------ closed lifecycles

    @staticmethod
    def closed_before(cutoff: datetime) -> ColumnElement[bool]:
        """Postmortems whose lifecycle ended before `cutoff` (see the module docstring)."""
        item = ActionItemRow
        finished = or_(item.status == "wont_do", and_(item.status == "done", item.verdict.is_not(None)))
        holds_on = (select(item.id).where(item.postmortem_id == PostmortemRow.id)
                    .where(or_(item.updated_at >= cutoff,
                               and_(PostmortemRow.stage != "cancelled", not_(finished)))))
        return and_(PostmortemRow.stage.in_(TERMINAL_STAGES), PostmortemRow.updated_at < cutoff,
                    not_(exists(holds_on)))

    def closed_lifecycles(self, cutoff: datetime) -> list[str]:
        """Ids of the postmortems `prune` would delete with `cutoff`."""
        with self.db.session() as s:
            return list(s.scalars(select(PostmortemRow.id).where(self.closed_before(cutoff))
                                  .order_by(PostmortemRow.id)))

    def _prune_lifecycles(self, cutoff: datetime, result: PruneResult, per_batch: int, tell: Progress) -> None:
        def batches() -> Iterator[list[str]]:
            if result.dry_run:  # nothing is deleted: walk the candidates once
                ids = self.closed_lifecycles(cutoff)
                yield from (ids[i:i + per_batch] for i in range(0, len(ids), per_batch))
                return
            while True:
                with self.db.session() as s:
                    ids = list(s.scalars(select(PostmortemRow.id).where(self.closed_before(cutoff))
                                         .order_by(PostmortemRow.id).limit(per_batch)))
                if not ids:
                    return
                yield ids

        for ids in batches():
            with self.db.session() as s:
                # checked again inside the transaction that deletes: a row changed meanwhile stays
                ids = list(s.scalars(select(PostmortemRow.id).where(PostmortemRow.id.in_(ids),
                                                                     self.closed_before(cutoff))))
                if not ids:
                    continue
                for name, n in self._lifecycle_rows(s, ids, count_only=result.dry_run):
                    result.deleted[name] = result.deleted.get(name, 0) + n
            result.lifecycles += len(ids)
            result.batches += 0 if result.dry_run else 1
            tell(f"lifecycles: {result.lifecycles}")

    @staticmethod
    def _lifecycle_rows(s: Session, ids: Sequence[str], *, count_only: bool) -> list[tuple[str, int]]:
        """Delete (or count) the rows of these lifecycles, children before parents."""
        item_ids = list(s.scalars(select(ActionItemRow.id).where(ActionItemRow.postmortem_id.in_(ids))))
        tickets = list(s.scalars(select(TicketRow.key).where(
            TicketRow.marker.in_([f"closeloop:{i}" for i in item_ids]))))  # activities/tickets.marker_for
        referred = list(s.scalars(select(PostmortemRow.incident_id).where(PostmortemRow.id.in_(ids))))
        shared = set(s.scalars(select(PostmortemRow.incident_id).where(  # by a postmortem that stays
            PostmortemRow.incident_id.in_(referred), PostmortemRow.id.not_in(ids))))
        incidents = [i for i in referred if i not in shared]
        steps: list[tuple[Any, ColumnElement[bool]]] = [
            (TicketCommentRow, TicketCommentRow.ticket_key.in_(tickets)),
            (TicketRow, TicketRow.key.in_(tickets)),
            (MeetingRow, MeetingRow.idempotency_key.in_([f"{i}/meeting" for i in ids])),  # schedule_meeting's key
            (NotificationRow, NotificationRow.postmortem_id.in_(ids)),
            (DraftAutosaveRow, DraftAutosaveRow.postmortem_id.in_(ids)),
            (ReviewRow, ReviewRow.postmortem_id.in_(ids)),
            # the links of its items to later incidents, and its own links to earlier items
            (ItemRecurrenceRow, or_(ItemRecurrenceRow.item_id.in_(item_ids), ItemRecurrenceRow.postmortem_id.in_(ids))),
            (ActionItemRow, ActionItemRow.postmortem_id.in_(ids)),
            (PostmortemRow, PostmortemRow.id.in_(ids)),
            (TimelineEventRow, TimelineEventRow.incident_id.in_(incidents)),
            (IncidentServiceRow, IncidentServiceRow.incident_id.in_(incidents)),
            (IncidentRow, IncidentRow.id.in_(incidents)),
        ]
        out: list[tuple[str, int]] = []
        for row, where in steps:
            if count_only:
                n = s.scalar(select(func.count()).select_from(row).where(where)) or 0
            else:
                n = _rowcount(s.execute(delete(row).where(where)))
            out.append((row.__tablename__, n))
        return out
