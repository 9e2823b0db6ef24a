"""Temporal Schedules for closeloop's periodic sweeps. Applied by the worker at start (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from closeloop import contract
from closeloop.models import SweepInput
from closeloop.retention import DEFAULT_EVERY as DEFAULT_RETENTION_EVERY

DEFAULT_SYNC_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class SweepSchedule:
    schedule_id: str
    cron: str
    description: str
    workflow: str = contract.STALLED_DIGEST_WORKFLOW
    every: timedelta | None = None  # an interval instead of the cron
    catchup_window: timedelta = timedelta(hours=12)


STALLED_DIGEST = SweepSchedule(contract.STALLED_DIGEST_SCHEDULE_ID, "0 8 * * 1-5",
                               "weekday 08:00 UTC digest of stalled postmortems and overdue items to managers")
# A missed run is worth nothing once the next one is due: no catch-up burst after an outage.
TICKET_SYNC = SweepSchedule(contract.TICKET_SYNC_SCHEDULE_ID, "",
                            "reconcile action items with their tickets ([sync] every)",
                            workflow=contract.TICKET_SYNC_WORKFLOW, every=DEFAULT_SYNC_EVERY,
                            catchup_window=timedelta(minutes=1))
# Daily by default ([retention] every); a run missed in an outage is made up within the hour, later ones wait.
RETENTION = SweepSchedule(contract.RETENTION_SCHEDULE_ID, "",
                          "delete what is past its retention ([retention]; every [retention] every)",
                          workflow=contract.RETENTION_WORKFLOW, every=DEFAULT_RETENTION_EVERY,
                          catchup_window=timedelta(hours=1))
ALL = [STALLED_DIGEST, TICKET_SYNC, RETENTION]


def _schedule(task_queue: str, sweep: SweepSchedule) -> Schedule:
    spec = (ScheduleSpec(intervals=[ScheduleIntervalSpec(every=sweep.every)]) if sweep.every
            else ScheduleSpec(cron_expressions=[sweep.cron]))
    return Schedule(
        action=ScheduleActionStartWorkflow(sweep.workflow, SweepInput(), id=sweep.schedule_id,
                                           task_queue=task_queue),
        spec=spec,
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=sweep.catchup_window),
    )


def sweeps(sync_every: timedelta = DEFAULT_SYNC_EVERY,
           retention_every: timedelta = DEFAULT_RETENTION_EVERY) -> list[SweepSchedule]:
    """The schedules, with the ticket sweep's and the clean-up's intervals from the config (`[sync] every`,
    `[retention] every`)."""
    every = {TICKET_SYNC.schedule_id: sync_every, RETENTION.schedule_id: retention_every}
    return [replace(s, every=every[s.schedule_id]) if s.schedule_id in every else s for s in ALL]


async def apply(client: Client, task_queue: str, *, sync_every: timedelta = DEFAULT_SYNC_EVERY,
                retention_every: timedelta = DEFAULT_RETENTION_EVERY) -> list[str]:
    """Create the schedules, or bring existing ones up to date. Returns their ids."""
    wanted = sweeps(sync_every, retention_every)
    for sweep in wanted:
        schedule = _schedule(task_queue, sweep)
        try:
            await client.create_schedule(sweep.schedule_id, schedule)
        except ScheduleAlreadyRunningError:
            async def updater(_: ScheduleUpdateInput, s: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=s)

            await client.get_schedule_handle(sweep.schedule_id).update(updater)
    return [s.schedule_id for s in wanted]
