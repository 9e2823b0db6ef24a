"""The built-in notifier: writes each notification to the log and to the outbox table, once per key."""

from __future__ import annotations

import structlog

from closeloop.integrations.base import Notification, Notifier
from closeloop.models import Person
from closeloop.store.store import Store

log = structlog.get_logger("closeloop.notify")


class LogNotifier(Notifier):
    name = "log"

    def __init__(self, store: Store) -> None:
        self.store = store

    def send(self, notification: Notification, person: Person | None) -> bool:
        first = self.store.local.record_notification(
            key=notification.key, kind=notification.kind, recipient=notification.recipient,
            subject=notification.subject, body=notification.body, at=notification.at,
            postmortem_id=notification.postmortem_id, item_id=notification.item_id, channel=self.name,
        )
        if first:
            log.info("notification", kind=notification.kind, to=notification.recipient,
                     email=person.email if person else None, subject=notification.subject,
                     postmortem_id=notification.postmortem_id, item_id=notification.item_id,
                     event_time=notification.at.isoformat())
        return first
