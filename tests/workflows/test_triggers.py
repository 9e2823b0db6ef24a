"""Starting lifecycles: a policy that needs no postmortem, and duplicate triggers."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowUpdateFailedError

from closeloop.client import start_postmortem
from closeloop.models import Cancellation, Stage
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.temporal_env import App, eventually, incident


async def test_policy_that_needs_no_postmortem_records_the_incident_and_skips(app: App) -> None:
    inc = incident(severity="SEV4", started_at=await app.now())
    handle = await app.resolve(inc)
    summary = await handle.result()
    assert summary.stage == Stage.skipped and summary.items == []
    state = await handle.query(PostmortemWorkflow.state)
    assert [c.stage for c in state.stages] == [Stage.skipped]
    # recorded all the same: later recurrence checks need every incident
    assert app.store.records.get_incident(inc.source, inc.external_id) == inc
    assert app.outbox(inc.workflow_id) == []
    assert app.store.records.get_postmortem(inc.workflow_id).stage == "skipped"


async def test_duplicate_trigger_starts_one_workflow(app: App) -> None:
    inc = incident()
    # a burst of deliveries of the same resolution, concurrently
    results = await asyncio.gather(*(start_postmortem(app.client, app.task_queue, inc) for _ in range(5)))
    assert sum(r.new for r in results) == 1
    assert len({r.workflow_id for r in results}) == 1
    runs = {r.run_id for r in results if r.run_id}
    assert len(runs) == 1  # everyone got the same run
    handle = await app.resolve(inc)  # tracked for clean-up; joins the same run
    await app.wait_stage(handle, Stage.drafting)
    assert (await handle.describe()).run_id in runs
    await eventually(lambda: [n[0] for n in app.outbox(inc.workflow_id)].count("draft_requested") == 1)
    assert [n[0] for n in app.outbox(inc.workflow_id)].count("invite") == 3  # one per attendee, not per trigger

    # after the lifecycle ended, a late redelivery starts nothing new either
    with pytest.raises(WorkflowUpdateFailedError):  # people must say who and why
        await handle.execute_update(PostmortemWorkflow.cancel, Cancellation(by="mallory", reason="x"))
    await handle.execute_update(PostmortemWorkflow.cancel, Cancellation(by="alice", reason="duplicate of INC-1"))
    assert (await handle.result()).stage == Stage.cancelled
    assert [k for k, *_ in app.outbox(inc.workflow_id)][-1] == "cancelled"
    late = await start_postmortem(app.client, app.task_queue, inc)
    assert late.new is False and late.workflow_id == inc.workflow_id
