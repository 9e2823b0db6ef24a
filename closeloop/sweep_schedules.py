"""Temporal Schedules for closeloop's periodic sweeps. Applied by the worker at start: a missing Schedule is
created; an existing one whose settings differ from the config's (another deployment's task queue, an edited
interval, a paused Schedule) is left alone with a warning, unless the worker is told to update it
(`--update-schedules`): a worker started on the wrong server must not rewrite that server's Schedules."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
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

log = structlog.get_logger("closeloop.schedules")

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
# Monthly by default ([reports] effectiveness_cron); a run missed in an outage is made up within a day.
EFFECTIVENESS_REVIEW = SweepSchedule(contract.EFFECTIVENESS_REVIEW_SCHEDULE_ID, "0 9 1 * *",
                                     "the effectiveness review of last month for reliability leads ([reports])",
                                     workflow=contract.EFFECTIVENESS_REVIEW_WORKFLOW, catchup_window=timedelta(days=1))
ALL = [STALLED_DIGEST, TICKET_SYNC, RETENTION, EFFECTIVENESS_REVIEW]
DEFAULT_REVIEW_CRON = EFFECTIVENESS_REVIEW.cron


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
           retention_every: timedelta = DEFAULT_RETENTION_EVERY,
           review_cron: str = DEFAULT_REVIEW_CRON) -> list[SweepSchedule]:
    """The schedules, with the ticket sweep's and the clean-up's intervals and the review's cron from the config
    (`[sync] every`, `[retention] every`, `[reports] effectiveness_cron`)."""
    every = {TICKET_SYNC.schedule_id: sync_every, RETENTION.schedule_id: retention_every}
    crons = {EFFECTIVENESS_REVIEW.schedule_id: review_cron}
    return [replace(s, every=every[s.schedule_id]) if s.schedule_id in every
            else replace(s, cron=crons[s.schedule_id]) if s.schedule_id in crons else s for s in ALL]


async def apply(client: Client, task_queue: str, *, sync_every: timedelta = DEFAULT_SYNC_EVERY,
                retention_every: timedelta = DEFAULT_RETENTION_EVERY, review_cron: str = DEFAULT_REVIEW_CRON,
                update: bool = False) -> dict[str, str]:
    """Create the missing schedules; leave an existing one as it is when it already matches, or when its settings
    differ and `update` is False (a warning names the differences). Returns what became of each:
    "created", "unchanged", "kept" (differs, left alone) or "updated"."""
    outcome: dict[str, str] = {}
    for sweep in sweeps(sync_every, retention_every, review_cron):
        schedule = _schedule(task_queue, sweep)
        try:
            await client.create_schedule(sweep.schedule_id, schedule)
            outcome[sweep.schedule_id] = "created"
            continue
        except ScheduleAlreadyRunningError:
            pass
        handle = client.get_schedule_handle(sweep.schedule_id)
        diffs = differences((await handle.describe()).schedule, schedule)
        if not diffs:
            outcome[sweep.schedule_id] = "unchanged"
        elif not update:
            log.warning("schedule differs from the config; left as it is (start the worker with --update-schedules "
                        "to apply the config's)", schedule=sweep.schedule_id, differences=diffs)
            outcome[sweep.schedule_id] = "kept"
        else:
            async def updater(_: ScheduleUpdateInput, s: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=s)

            await handle.update(updater)
            log.warning("schedule updated to the config's settings", schedule=sweep.schedule_id, differences=diffs)
            outcome[sweep.schedule_id] = "updated"
    log.info("schedules applied", schedules=outcome)
    return outcome


def differences(existing: Schedule, wanted: Schedule) -> list[str]:
    """What applying `wanted` would change in `existing`, one "what: existing -> wanted" each (empty: the same).
    The server keeps a cron expression as calendar ranges, so a cron is compared as those."""
    def facts(schedule: Schedule) -> dict[str, Any]:
        action, spec, policy = schedule.action, schedule.spec, schedule.policy
        return {
            "workflow": getattr(action, "workflow", None), "workflow id": getattr(action, "id", None),
            "task queue": getattr(action, "task_queue", None),
            "intervals": sorted((i.every, i.offset or timedelta(0)) for i in spec.intervals),
            "calendars": sorted([_calendar(c) for c in spec.calendars]
                                + [_cron_calendar(c) for c in spec.cron_expressions]),
            "time zone": spec.time_zone_name or "UTC", "overlap": policy.overlap,
            "catchup window": policy.catchup_window, "paused": schedule.state.paused,
        }

    have, want = facts(existing), facts(wanted)
    return [f"{key}: {_show(have[key])} -> {_show(want[key])}" for key in want if have[key] != want[key]]


def _show(value: Any) -> str:
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    return getattr(value, "name", None) or str(value)


_Ranges = tuple[tuple[int, int, int], ...]
_CALENDAR_FIELDS = ("second", "minute", "hour", "day_of_month", "month", "year", "day_of_week")
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day_of_month", 1, 31), ("month", 1, 12), ("day_of_week", 0, 6))


def _calendar(spec: ScheduleCalendarSpec) -> tuple[_Ranges, ...]:
    """A calendar as plain (start, end, step) ranges per field, as the server normalises them."""
    return tuple(tuple((r.start, max(r.start, r.end), r.step or 1) for r in getattr(spec, f))
                 for f in _CALENDAR_FIELDS)


def _cron_calendar(cron: str) -> tuple[_Ranges, ...]:
    """A five-field cron expression (numbers, `*`, `a-b`, `/step`, lists) as the server's calendar ranges."""
    fields: dict[str, _Ranges] = {"second": ((0, 0, 1),), "year": ()}
    for text, (name, low, high) in zip(cron.split(), _CRON_FIELDS, strict=True):
        ranges = []
        for item in text.split(","):
            span, _, step = item.partition("/")
            start, _, end = (f"{low}-{high}" if span == "*" else span).partition("-")
            ranges.append((int(start), int(end or (high if step else start)), int(step or 1)))
        fields[name] = tuple(ranges)
    return tuple(fields[f] for f in _CALENDAR_FIELDS)
