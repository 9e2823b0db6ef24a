"""The retention clean-up on the real dev server: a worker process that starts creates the
`closeloop-retention` Schedule (daily by default), and a run of it deletes what is past retention."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from temporalio.service import RPCError

from closeloop.store.tables import WebhookDeliveryRow
from tests.devserver.conftest import DevApp

SCHEDULES = ("closeloop-retention", "closeloop-stalled-digest", "closeloop-ticket-sync")


async def test_the_worker_creates_the_daily_retention_schedule_and_a_run_prunes(dev_app: DevApp) -> None:
    store = dev_app.store
    store.deliveries.record_delivery("jira", "old")
    store.deliveries.record_delivery("jira", "young")
    with store.db.session() as s:
        s.execute(update(WebhookDeliveryRow).where(WebhookDeliveryRow.delivery_id == "old")
                  .values(received_at=datetime.now(UTC) - timedelta(days=31)))
    for sid in SCHEDULES:  # another test's, on this shared server: a worker keeps a differing Schedule as it is
        with contextlib.suppress(RPCError):
            await dev_app.env.client.get_schedule_handle(sid).delete()
    dev_app.workers.start()
    dev_app.workers.wait_ready()  # logged after the schedules were applied
    handle = dev_app.env.client.get_schedule_handle("closeloop-retention")
    try:
        desc = await handle.describe()
        assert [i.every for i in desc.schedule.spec.intervals] == [timedelta(days=1)]
        assert desc.schedule.action.workflow == "RetentionWorkflow"  # type: ignore[attr-defined]
        assert desc.schedule.action.task_queue == dev_app.task_queue  # type: ignore[attr-defined]
        await handle.trigger()  # what the daily run does
        for _ in range(300):
            if not store.deliveries.delivery_seen("jira", "old"):
                break
            await asyncio.sleep(0.1)
        assert not store.deliveries.delivery_seen("jira", "old"), dev_app.workers.diagnostics()
        assert store.deliveries.delivery_seen("jira", "young")
        for _ in range(100):  # the activity logs its counts after the last batch committed
            records = [r for r in dev_app.workers.log_records() if r.get("event") == "retention"]
            if records:
                break
            await asyncio.sleep(0.1)
        assert records and records[-1]["deleted"] == {"webhook_deliveries": 1}, dev_app.workers.diagnostics()
    finally:
        for sid in SCHEDULES:
            await dev_app.env.client.get_schedule_handle(sid).delete()  # no runs after this test's worker is gone
