"""Built-in timeline sources: the incident's own timestamps, and notes people add by hand."""

from __future__ import annotations

from closeloop.integrations.base import TimelineSource
from closeloop.models import Incident, TimelineEvent
from closeloop.store.store import Store


class IncidentFactsSource(TimelineSource):
    """The moments every incident record carries: started, detected, mitigated, resolved."""

    name = "incident"

    def fetch(self, incident: Incident) -> list[TimelineEvent]:
        facts = [
            (incident.started_at, "start", "Incident started"),
            (incident.detected_at, "detection", "Incident detected"),
            (incident.mitigated_at, "mitigation", "Impact mitigated"),
            (incident.resolved_at, "resolution", "Incident resolved"),
        ]
        return [
            TimelineEvent(at=at, source=f"{incident.source}", kind=kind, text=text, key_moment=True)
            for at, kind, text in facts
            if at is not None
        ]


class NotesSource(TimelineSource):
    """Notes added through `closeloop timeline note` (or the API)."""

    name = "notes"

    def __init__(self, store: Store) -> None:
        self.store = store

    def fetch(self, incident: Incident) -> list[TimelineEvent]:
        return self.store.records.timeline(incident, notes_only=True)
