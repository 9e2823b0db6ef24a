"""The scheduled clean-up: rows past their retention (`[retention]`) leave the store, in bounded batches
(closeloop/store/retention.py), heartbeating after each. Run by the `closeloop-retention` Temporal Schedule
(closeloop/sweep_schedules.py); `closeloop db prune` runs the same deletion by hand."""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from closeloop.activities.support import heartbeat, log
from closeloop.models import Model, PruneResult
from closeloop.store.retention import Cutoffs, RetentionDurations
from closeloop.store.store import Store


class PruneInput(Model):
    at: datetime  # the sweep's (workflow) time: the cutoffs count back from it, so a retry deletes the same rows


class RetentionActivities:
    """The clean-up; holds the store and the retention settings."""

    def __init__(self, store: Store, keep: RetentionDurations, batch_size: int) -> None:
        self.store = store
        self.keep = keep
        self.batch_size = batch_size

    @activity.defn(name="prune_store")
    def prune_store(self, inp: PruneInput) -> PruneResult:
        result = self.store.retention.prune(Cutoffs.of(self.keep, inp.at), batch_size=self.batch_size,
                                            progress=heartbeat)
        log().info("retention", deleted={k: v for k, v in result.deleted.items() if v}, total=result.total,
                   lifecycles=result.lifecycles, batches=result.batches)
        return result
