"""Keep the store's view of a lifecycle current (for the CLI, dashboards and recurrence checks).
Upserts: running one twice leaves the same rows."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import activity

from closeloop.models import ActionItem, DefeatedItem, Incident, Model, ReviewRecord, TimelineEvent
from closeloop.store.store import Store


class PostmortemRecord(Model):
    postmortem_id: str
    incident: Incident
    owner: str
    stage: str
    stalled: bool
    stage_due_at: datetime | None
    at: datetime | None = None  # the lifecycle's time of the change (None from lifecycles started before it)


class ReviewInput(Model):
    postmortem_id: str
    review: ReviewRecord


class TimelineInput(Model):
    incident: Incident
    events: list[TimelineEvent]


class RecurrenceLinkInput(Model):
    postmortem_id: str
    incident: Incident
    within: timedelta  # items completed this long before the incident started count as defeated
    at: datetime  # the workflow's now


class RecordActivities:
    """Writes of a lifecycle's records; holds the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @activity.defn(name="save_postmortem")
    def save_postmortem(self, rec: PostmortemRecord) -> None:
        self.store.records.upsert_postmortem(rec.postmortem_id, rec.incident, owner=rec.owner, stage=rec.stage,
                                     stalled=rec.stalled, stage_due_at=rec.stage_due_at, at=rec.at)

    @activity.defn(name="save_action_item")
    def save_action_item(self, item: ActionItem) -> None:
        self.store.records.upsert_action_item(item)

    @activity.defn(name="save_review")
    def save_review(self, inp: ReviewInput) -> None:
        self.store.records.record_review(inp.postmortem_id, inp.review)

    @activity.defn(name="save_timeline")
    def save_timeline(self, inp: TimelineInput) -> int:
        return self.store.records.add_timeline_events(inp.incident, inp.events)

    @activity.defn(name="link_recurrences")
    def link_recurrences(self, inp: RecurrenceLinkInput) -> list[DefeatedItem]:
        """The earlier done action items this incident defeated, linked to its postmortem (idempotent)."""
        return self.store.records.link_recurrences(inp.postmortem_id, inp.incident, within=inp.within, at=inp.at)
