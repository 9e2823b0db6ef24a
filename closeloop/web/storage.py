"""What the web app keeps in closeloop's store, as the narrow interface it uses: incidents and their timelines,
action items by ticket (with the newest ticket event applied to each), and the webhook delivery log.
closeloop.store.store.Store provides it; the web app never imports the store, whoever builds the app passes one
in (closeloop.serve)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from closeloop.models import ActionItem, Incident, TimelineEvent


class IncidentRecords(Protocol):
    def incident_id(self, source: str, external_id: str) -> int | None: ...

    def get_incident(self, source: str, external_id: str) -> Incident | None: ...

    def add_timeline_events(self, incident: Incident, events: list[TimelineEvent], *, notes: bool = False) -> int: ...

    def action_item_by_ticket(self, tracker: str, ticket_key: str) -> ActionItem | None: ...

    def ticket_event(self, item_id: str) -> tuple[datetime, str] | None: ...

    def record_ticket_event(self, item_id: str, at: datetime, status: str) -> bool: ...


class Deliveries(Protocol):
    def delivery_seen(self, source: str, delivery_id: str) -> bool: ...

    def record_delivery(self, source: str, delivery_id: str) -> bool: ...


class WebStorage(Protocol):
    @property
    def records(self) -> IncidentRecords: ...

    @property
    def deliveries(self) -> Deliveries: ...

    def close(self) -> None: ...
