"""Ask one timeline source what it saw. The workflow fans out one of these per source."""

from __future__ import annotations

from temporalio import activity

from activities._shared import deps, heartbeat, log
from closeloop.models import Incident, Model, TimelineEvent


class CollectTimelineInput(Model):
    source: str
    incident: Incident


@activity.defn
def collect_timeline(inp: CollectTimelineInput) -> list[TimelineEvent]:
    source = deps().timeline_sources.get(inp.source)
    if source is None:
        from temporalio.exceptions import ApplicationError

        raise ApplicationError(f"timeline source {inp.source!r} is not configured", type="NonRetryable",
                               non_retryable=True)
    heartbeat(inp.source)
    events = source.fetch(inp.incident)
    log().info("timeline collected", source=inp.source, events=len(events))
    return events
