"""What each delivery channel did with a notification (closeloop.integrations.base.Channel): one row per
notification key and channel: `sending` just before the channel is asked to send, then `sent` (with the
provider's message id) or `failed` (for good). The notify activity reads it first: a retry never sends again
what a channel took, skips a channel that failed for good, and after `sending` (a crash mid-send) asks the
provider whether it arrived before sending again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from closeloop.store.database import Database
from closeloop.store.tables import ChannelDeliveryRow

TEXT_CHARS = 500


@dataclass(frozen=True)
class ChannelDelivery:
    key: str
    channel: str
    recipient: str
    address: str
    status: str  # sending, sent, failed; queued (the `digest` channel: waiting for the day's digest)
    message_id: str | None
    error: str | None
    updated_at: datetime


def _delivery(row: ChannelDeliveryRow) -> ChannelDelivery:
    return ChannelDelivery(key=row.key, channel=row.channel, recipient=row.recipient, address=row.address,
                           status=row.status, message_id=row.message_id, error=row.error, updated_at=row.updated_at)


class ChannelDeliveries:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str, channel: str) -> ChannelDelivery | None:
        with self.db.session() as s:
            row = s.scalar(select(ChannelDeliveryRow).where(ChannelDeliveryRow.key == key,
                                                            ChannelDeliveryRow.channel == channel))
            return _delivery(row) if row is not None else None

    def of(self, keys: list[str]) -> list[ChannelDelivery]:
        """Every channel's record of these notifications, by key then id."""
        if not keys:
            return []
        with self.db.session() as s:
            rows = s.scalars(select(ChannelDeliveryRow).where(ChannelDeliveryRow.key.in_(keys))
                             .order_by(ChannelDeliveryRow.key, ChannelDeliveryRow.id))
            return [_delivery(r) for r in rows]

    def queue(self, key: str, channel: str, recipient: str, address: str) -> None:
        """Hold it for a digest (a person who takes reminders once a day)."""
        if self.get(key, channel) is None:
            self._record(key, channel, recipient, address, "queued", message_id=None, error=None)

    def queued(self, channel: str) -> list[ChannelDelivery]:
        """What waits on `channel` (e.g. the day's digest), oldest first."""
        with self.db.session() as s:
            rows = s.scalars(select(ChannelDeliveryRow).where(ChannelDeliveryRow.channel == channel,
                                                              ChannelDeliveryRow.status == "queued")
                             .order_by(ChannelDeliveryRow.id))
            return [_delivery(r) for r in rows]

    def sending(self, key: str, channel: str, recipient: str, address: str) -> None:
        """About to send: a crash before `sent` leaves this, and the retry asks the provider first."""
        self._record(key, channel, recipient, address, "sending", message_id=None, error=None)

    def sent(self, key: str, channel: str, recipient: str, address: str, message_id: str) -> None:
        self._record(key, channel, recipient, address, "sent", message_id=message_id[:TEXT_CHARS], error=None)

    def failed(self, key: str, channel: str, recipient: str, address: str, error: str) -> bool:
        """Record a failure no retry fixes; True unless it was recorded failed already (the operator is told
        once)."""
        before = self._record(key, channel, recipient, address, "failed", message_id=None, error=error[:TEXT_CHARS])
        return before != "failed"

    def _record(self, key: str, channel: str, recipient: str, address: str, status: str, *,
                message_id: str | None, error: str | None) -> str | None:
        """Insert or update the row; the status it had before (None: there was none)."""
        values = dict(recipient=recipient[:200], address=address[:300], status=status, message_id=message_id,
                      error=error, updated_at=datetime.now(UTC))
        try:
            with self.db.session() as s:
                s.add(ChannelDeliveryRow(key=key[:500], channel=channel[:32], **values))
            return None
        except IntegrityError:
            where = (ChannelDeliveryRow.key == key[:500]) & (ChannelDeliveryRow.channel == channel[:32])
            with self.db.session() as s:
                before = s.scalar(select(ChannelDeliveryRow.status).where(where))
                s.execute(update(ChannelDeliveryRow).where(where).values(**values))
            return before
