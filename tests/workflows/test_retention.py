"""The retention clean-up that a Temporal Schedule runs daily: RetentionWorkflow runs the prune activity on the
store (what goes and what stays: tests/closeloop/store/test_retention.py), and the schedule follows
`[retention] every`."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from closeloop.models import ActionItemSpec, PruneResult, Stage
from closeloop.store.tables import PostmortemRow, WebhookDeliveryRow
from closeloop.workflows.sweeps import RetentionWorkflow, SweepInput
from tests.temporal_env import App, incident, make_config, running_app
from tests.workflows.drive import to_following_up

DAY = timedelta(days=1)


async def test_the_sweep_deletes_what_is_past_retention_and_keeps_a_running_lifecycle(time_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with running_app(time_env, tmp_path, extra='\n[retention]\nclosed_records = "180d"\n') as app:
        await _sweep(app)


async def _sweep(app: App) -> None:
    running, _state = await to_following_up(app, incident(), ActionItemSpec(title="Add a canary", owner="bob"))
    closed = incident(title="Old outage")
    pid = closed.workflow_id
    app.store.records.upsert_postmortem(pid, closed, owner="alice", stage="closed", stalled=False,
                                        stage_due_at=None)
    now = await app.now()
    app.store.deliveries.record_delivery("github", "old")
    app.store.deliveries.record_delivery("github", "young")
    with app.store.db.session() as s:  # as if written long ago
        s.execute(update(WebhookDeliveryRow).where(WebhookDeliveryRow.delivery_id == "old")
                  .values(received_at=now - 31 * DAY))
        s.execute(update(PostmortemRow).values(updated_at=now - 200 * DAY))  # the running one's too

    handle = await app.client.start_workflow(RetentionWorkflow.run, SweepInput(), id="retention-1",
                                             task_queue=app.task_queue)
    for _ in range(300):  # not result(): waiting on a result lets the test server skip time
        desc = await handle.describe()
        if desc.status and desc.status.name == "COMPLETED":
            break
        await asyncio.sleep(0.05)
    result: PruneResult = await handle.result()
    assert result.deleted["webhook_deliveries"] == 1 and result.lifecycles == 1 and result.deleted["incidents"] == 1
    assert not app.store.deliveries.delivery_seen("github", "old")
    assert app.store.deliveries.delivery_seen("github", "young")
    assert app.store.records.get_postmortem(pid) is None
    kept = app.store.records.get_postmortem(running.id)
    assert kept is not None and kept.stage == Stage.following_up.value
    assert app.store.records.action_items(running.id)


def test_the_retention_schedule_follows_the_config_and_the_config_refuses_too_short_a_retention(
        tmp_path: Path) -> None:
    from temporalio.client import ScheduleOverlapPolicy

    from closeloop.config import ConfigError
    from closeloop.sweep_schedules import _schedule, sweeps

    config = make_config(tmp_path)
    keep = config.retention
    assert (keep.deliveries, keep.notifications, keep.rate_events, keep.closed_records, keep.every) == (
        30 * DAY, 90 * DAY, 7 * DAY, None, DAY)  # the defaults
    config = make_config(tmp_path, extra='\n[retention]\nevery = "6h"\nclosed_records = "4w 3d"\n')
    assert config.retention.closed_records == 31 * DAY
    by_id = {s.schedule_id: s for s in sweeps(config.sync.every, config.retention.every)}
    schedule = _schedule("q", by_id["closeloop-retention"])
    assert [i.every for i in schedule.spec.intervals] == [timedelta(hours=6)]
    assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert schedule.action.workflow == "RetentionWorkflow"  # type: ignore[attr-defined]
    for bad, where in (('deliveries = "6d"', "at least 7d"), ('rate_events = "2h"', "at least 1d"),
                       ('closed_records = "10d"', "at least 30d"), ('every = "5m"', "at least 1h"),
                       ('batch_size = 0', "retention.batch_size")):
        with pytest.raises(ConfigError, match=where):
            make_config(tmp_path, extra=f"\n[retention]\n{bad}\n")
