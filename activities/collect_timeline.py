"""Ask one timeline source what it saw. The workflow fans out one of these per source (BEST_EFFORT: a few
tries); an error no retry can fix (401, 404, bad config) fails at once, and either way the workflow puts a
note naming the source in the timeline instead."""

from __future__ import annotations

from collections.abc import Mapping

from temporalio import activity

from closeloop.activities.support import external_errors, heartbeat, log, non_retryable
from closeloop.integrations.base import TimelineSource, progress_to
from closeloop.models import Incident, Model, TimelineEvent


class CollectTimelineInput(Model):
    source: str
    incident: Incident


class TimelineActivities:
    """Collecting the timeline; holds the configured timeline sources by name."""

    def __init__(self, sources: Mapping[str, TimelineSource]) -> None:
        self.sources = sources

    @activity.defn(name="collect_timeline")
    def collect_timeline(self, inp: CollectTimelineInput) -> list[TimelineEvent]:
        source = self.sources.get(inp.source)
        if source is None:
            raise non_retryable(f"timeline source {inp.source!r} is not configured")
        heartbeat(inp.source)
        with external_errors("collecting the timeline"), progress_to(lambda *page: heartbeat(inp.source, *page)):
            events = source.fetch(inp.incident)
        log().info("timeline collected", source=inp.source, events=len(events))
        return events
