"""The delivery log: which webhook deliveries (and the ticket sweep's remembered signals) were already
applied, so a replay is acknowledged and not applied twice."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select, update

from closeloop.store.database import Database
from closeloop.store.tables import WebhookDeliveryRow


class DeliveryLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record_delivery(self, source: str, delivery_id: str) -> bool:
        """Remember a webhook delivery; False when it was seen before (a replay: acknowledge, don't apply).
        Seen before, it is remembered afresh: retention (`[retention] deliveries`) counts from the last time a
        delivery, or the ticket sweep's evidence it records on every pass, was seen."""
        if self.db.insert_once(WebhookDeliveryRow(source=source, delivery_id=delivery_id[:200])):
            return True
        with self.db.session() as s:
            s.execute(update(WebhookDeliveryRow).where(WebhookDeliveryRow.source == source,
                                                       WebhookDeliveryRow.delivery_id == delivery_id[:200])
                      .values(received_at=datetime.now(UTC)))
        return False

    def delivery_seen(self, source: str, delivery_id: str) -> bool:
        """Whether `record_delivery` already recorded this delivery (checked before acting, recorded after)."""
        with self.db.session() as s:
            return s.scalar(select(WebhookDeliveryRow.id).where(
                WebhookDeliveryRow.source == source, WebhookDeliveryRow.delivery_id == delivery_id[:200])) is not None

    def forget_delivery(self, source: str, delivery_id: str) -> None:
        """Drop a recorded delivery (the sweep's evidence that has been used up)."""
        with self.db.session() as s:
            s.execute(delete(WebhookDeliveryRow).where(WebhookDeliveryRow.source == source,
                                                       WebhookDeliveryRow.delivery_id == delivery_id[:200]))
