"""Keep the store's view of a lifecycle current (for the CLI, dashboards and recurrence checks).
Upserts: running one twice leaves the same rows."""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from closeloop.activities._shared import deps
from closeloop.models import ActionItem, Incident, Model, ReviewRecord, TimelineEvent


class PostmortemRecord(Model):
    postmortem_id: str
    incident: Incident
    owner: str
    stage: str
    stalled: bool
    stage_due_at: datetime | None


@activity.defn
def save_postmortem(rec: PostmortemRecord) -> None:
    deps().store.records.upsert_postmortem(rec.postmortem_id, rec.incident, owner=rec.owner, stage=rec.stage,
                                           stalled=rec.stalled, stage_due_at=rec.stage_due_at)


@activity.defn
def save_action_item(item: ActionItem) -> None:
    deps().store.records.upsert_action_item(item)


class ReviewInput(Model):
    postmortem_id: str
    review: ReviewRecord


@activity.defn
def save_review(inp: ReviewInput) -> None:
    deps().store.records.record_review(inp.postmortem_id, inp.review)


class TimelineInput(Model):
    incident: Incident
    events: list[TimelineEvent]


@activity.defn
def save_timeline(inp: TimelineInput) -> int:
    return deps().store.records.add_timeline_events(inp.incident, inp.events)
