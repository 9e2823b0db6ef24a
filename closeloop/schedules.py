"""Temporal Schedules for closeloop's periodic sweeps. Applied by the worker at start (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from workflows.sweeps import StalledDigestWorkflow, SweepInput


@dataclass(frozen=True)
class SweepSchedule:
    schedule_id: str
    cron: str
    description: str


STALLED_DIGEST = SweepSchedule("closeloop-stalled-digest", "0 8 * * 1-5",
                               "weekday 08:00 UTC digest of stalled postmortems and overdue items to managers")
ALL = [STALLED_DIGEST]


def _schedule(task_queue: str, sweep: SweepSchedule) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(StalledDigestWorkflow.run, SweepInput(), id=sweep.schedule_id,
                                           task_queue=task_queue),
        spec=ScheduleSpec(cron_expressions=[sweep.cron]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(hours=12)),
    )


async def apply(client: Client, task_queue: str) -> list[str]:
    """Create the schedules, or bring existing ones up to date. Returns their ids."""
    for sweep in ALL:
        schedule = _schedule(task_queue, sweep)
        try:
            await client.create_schedule(sweep.schedule_id, schedule)
        except ScheduleAlreadyRunningError:
            async def updater(_: ScheduleUpdateInput, s: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=s)

            await client.get_schedule_handle(sweep.schedule_id).update(updater)
    return [s.schedule_id for s in ALL]
