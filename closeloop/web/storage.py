"""What the web app keeps in closeloop's store, as the narrow interface it uses: incidents and their timelines,
action items by ticket, the webhook delivery log, and the incident inbox it answers from.
closeloop.store.store.Store provides it; the web app never imports the store, whoever builds the app passes
one in (closeloop.serving)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol

from closeloop.models import ActionItem, InboxEntry, Incident, TimelineEvent


class IncidentRecords(Protocol):
    def incident_id(self, source: str, external_id: str) -> int | None: ...

    def get_incident(self, source: str, external_id: str) -> Incident | None: ...

    def add_timeline_events(self, incident: Incident, events: list[TimelineEvent], *, notes: bool = False) -> int: ...

    def action_item_by_ticket(self, tracker: str, ticket_key: str) -> ActionItem | None: ...


class Deliveries(Protocol):
    def delivery_seen(self, source: str, delivery_id: str) -> bool: ...

    def record_delivery(self, source: str, delivery_id: str) -> bool: ...


class Inbox(Protocol):
    def receive(self, incident: Incident, via: str) -> bool: ...

    def entry(self, source: str, external_id: str) -> InboxEntry | None: ...

    def claim(self, limit: int, lease: timedelta, *, now: datetime | None = None) -> list[InboxEntry]: ...

    def forwarded(self, ids: Iterable[int], *, now: datetime | None = None) -> None: ...

    def retry(self, ids: Iterable[int], error: str, at: datetime) -> None: ...

    def refuse(self, row_id: int, reason: str) -> None: ...


class WebStorage(Protocol):
    @property
    def records(self) -> IncidentRecords: ...

    @property
    def deliveries(self) -> Deliveries: ...

    @property
    def inbox(self) -> Inbox: ...

    def close(self) -> None: ...
