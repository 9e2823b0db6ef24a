"""A lifecycle carries only the people it involves, whatever the size of the directory: anyone else an action
names (an action item's owner, a new owner, whoever cancels) is looked up in the directory by the Update's
handler, and an unknown person is refused with the same words as before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from closeloop.models import ActionItemSpec, Cancellation, Stage
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.temporal_env import incident, record_histories, running_app
from tests.workflows.drive import draft

CROWD = 300  # people nobody in the lifecycle reports to


def crowd() -> str:
    people = ['[people.frank]\nname = "Frank Far"\nemail = "frank@example.com"\n']
    people += [f'[people.p{i:04d}]\nname = "P {i}"\nemail = "p{i}@example.com"\nmanager = "dave"\n'
               for i in range(CROWD)]
    return "\n".join(people)


async def test_the_plan_holds_the_involved_people_and_others_are_looked_up(time_env: WorkflowEnvironment,
                                                                           tmp_path: Path) -> None:
    async with running_app(time_env, tmp_path, extra=crowd()) as app:
        inc = incident()
        handle = await app.resolve(inc)
        state = await app.wait_stage(handle, Stage.drafting)
        # alice owns; bob and erin review; carol (their manager) and dave (two levels up) are the chain
        assert state.plan.people == ["alice", "bob", "carol", "dave", "erin"]

        with pytest.raises(WorkflowUpdateFailedError) as unknown:
            await handle.execute_update(PostmortemWorkflow.submit_draft,
                                        draft(ActionItemSpec(title="Add a canary", owner="zed")))
        assert "action item 'Add a canary': unknown owner 'zed'" in str(unknown.value.cause)
        assert (await handle.query(PostmortemWorkflow.state)).drafts_submitted == 0

        answer = await handle.execute_update(PostmortemWorkflow.submit_draft,
                                             draft(ActionItemSpec(title="Add a canary", owner="frank")))
        assert answer == "draft 1 accepted with 1 action item(s)"
        state = await app.wait_stage(handle, Stage.in_review)
        assert "frank" in state.plan.people and len(state.plan.people) == 6

        with pytest.raises(WorkflowUpdateFailedError) as nobody:
            await handle.execute_update(PostmortemWorkflow.cancel, Cancellation(by="p9999", reason="duplicate"))
        assert "unknown person 'p9999'" in str(nobody.value.cause)
        await handle.execute_update(PostmortemWorkflow.cancel, Cancellation(by="p0007", reason="duplicate"))
        state = await app.wait_stage(handle, Stage.cancelled)
        assert state.cancelled.by == "p0007" and "p0007" in state.plan.people
        if os.environ.get("CLOSELOOP_RECORD_HISTORIES") == "1":  # the lookups in Update handlers, for replay
            await record_histories(app, "test_the_plan_holds_the_involved_people_and_others_are_looked_up")
