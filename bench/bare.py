"""The baseline for bench/lifecycles.py: a workflow with nothing but the same number of activities and
timers a closeloop lifecycle has, so the difference is closeloop's own orchestration (state, updates,
child workflows, signals, search attributes, the store behind the activities).

A no-op activities run one after another (each is one round trip, like closeloop's sequential activity
calls). T timers of 1 ms are started in the first workflow task and awaited at the end, so they fire while
the activities run: on the dev server a timer takes about a second to fire however short it is, and T
such timers one after another would measure that second T times, not orchestration."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow


@dataclass
class BareInput:
    activities: int
    timers: int


@activity.defn(name="bench_noop")
def noop(n: int) -> int:
    """Synchronous, like closeloop's activities, so it runs in the worker's thread pool too."""
    return n


@workflow.defn(name="BenchBareWorkflow")
class BareWorkflow:
    @workflow.run
    async def run(self, inp: BareInput) -> int:
        timers = [asyncio.ensure_future(workflow.sleep(timedelta(milliseconds=1))) for _ in range(inp.timers)]
        done = 0
        for n in range(inp.activities):
            await workflow.execute_activity(noop, n, start_to_close_timeout=timedelta(seconds=30))
            done += 1
        await asyncio.gather(*timers)
        return done
