"""The Alertmanager timeline source: the alerts its webhook stored for the incident (firing and resolved),
read back from the store when the lifecycle collects its timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from closeloop.integrations.base import TimelineSource
from closeloop.models import Incident, TimelineEvent
from closeloop.store.store import Store

ALERT_KINDS = ("alert", "alert_resolved")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def alertmanager_events(group: dict[str, Any]) -> list[TimelineEvent]:
    """The moments an Alertmanager webhook group tells: each alert firing (`startsAt`) and, once it ended,
    resolving (`endsAt`). The earliest firing is a key moment: it is when the alerting saw the incident."""
    events: list[TimelineEvent] = []
    common = _mapping(group.get("commonLabels"))
    for alert in group.get("alerts") or []:
        if not isinstance(alert, dict):
            continue
        labels = {**common, **_mapping(alert.get("labels"))}
        annotations = _mapping(alert.get("annotations"))
        name = str(labels.get("alertname") or "alert")
        where = f" on {labels['instance']}" if labels.get("instance") else ""
        summary = str(annotations.get("summary") or "").strip()
        what = " ".join(f"{name}{where}{': ' + summary if summary else ''}".split())[:1000]
        url = alert.get("generatorURL") if isinstance(alert.get("generatorURL"), str) else None
        url = url if url and len(url) <= 1000 else None
        for field, kind, verb in (("startsAt", "alert", "firing"), ("endsAt", "alert_resolved", "resolved")):
            at = _alert_time(alert.get(field))
            if at is not None:
                events.append(TimelineEvent(at=at, source="alertmanager", kind=kind, text=f"Alert {verb}: {what}",
                                            url=url))
    firing = [e for e in events if e.kind == "alert"]
    if firing:
        first = min(firing, key=lambda e: e.at)
        events[events.index(first)] = first.model_copy(update={"key_moment": True})
    return events


def _alert_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.year <= 1:  # Go's zero time: not ended
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class AlertmanagerSource(TimelineSource):
    """The alerts the Alertmanager webhook stored for the incident (`POST /webhooks/alertmanager`)."""

    name = "alertmanager"

    def __init__(self, store: Store, *, key_moments: bool = True) -> None:
        self.store = store
        self.key_moments = key_moments

    def fetch(self, incident: Incident) -> list[TimelineEvent]:
        events = [e for e in self.store.records.timeline(incident)
                  if e.source == "alertmanager" and e.kind in ALERT_KINDS]
        return events if self.key_moments else [e.model_copy(update={"key_moment": False}) for e in events]
