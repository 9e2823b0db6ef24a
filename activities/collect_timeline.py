"""Ask one timeline source what it saw. The workflow fans out one of these per source (BEST_EFFORT: a few
tries); an error no retry can fix (401, 404, bad config) fails at once, and either way the workflow puts a
note naming the source in the timeline instead."""

from __future__ import annotations

from temporalio import activity

from closeloop.activities._shared import deps, external_errors, heartbeat, log
from closeloop.models import Incident, Model, TimelineEvent
from closeloop.integrations.base import progress_to


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
    with external_errors("collecting the timeline"), progress_to(lambda *page: heartbeat(inp.source, *page)):
        events = source.fetch(inp.incident)
    log().info("timeline collected", source=inp.source, events=len(events))
    return events
