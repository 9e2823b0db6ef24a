"""A cancelled lifecycle closes its action items: an open item becomes `cancelled` (so the managers' digest
stops nagging about it and the ticket sweep stops checking it), its ticket gets a comment saying why, and is
closed as won't do unless `[tickets] close_on_cancel = false`. The CANCEL Update and a workflow cancellation
request do it in the workflows; a terminated lifecycle runs no code, so the ticket sweep does it when it
finds an open item whose workflow no longer runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from closeloop.models import ActionItemSpec, Cancellation, CompleteItem, Stage
from closeloop.workflows.action_item import ActionItemWorkflow
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.temporal_env import DAY, App, eventually, incident, running_app
from tests.workflows.drive import to_following_up
from tests.workflows.test_ticket_sync import sweep

OPEN = ActionItemSpec(title="Validate config before push", owner="bob", priority="P1")
DONE = ActionItemSpec(title="Add a canary stage", owner="bob", priority="P2")


def _status(app: App, item_id: str) -> str:
    return next(i.status.value for i in app.store.records.action_items() if i.id == item_id)


async def _idle(app: App, *workflow_ids: str) -> None:
    """Until no activity of these workflows is in flight. The time-skipping test server fails a workflow task
    that cancels an activity completing at that moment (ACTIVITY_UNKNOWN); a real server does not."""
    for _ in range(200):
        descs = [(await app.client.get_workflow_handle(w).describe()).raw_description for w in workflow_ids]
        if not any(d.pending_activities or d.HasField("pending_workflow_task") for d in descs):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("activities still in flight")


async def test_the_cancel_update_cancels_open_items_and_closes_their_tickets(app: App) -> None:
    inc = incident()
    handle, state = await to_following_up(app, inc, OPEN, DONE)
    open_item, done_item = state.items
    await app.client.get_workflow_handle(done_item.id).execute_update(ActionItemWorkflow.complete,
                                                                      CompleteItem(by="bob"))
    await eventually(lambda: _status(app, done_item.id) == "done")
    await _idle(app, open_item.id, done_item.id)

    await handle.execute_update(PostmortemWorkflow.cancel, Cancellation(by="alice", reason="duplicate of INC-1"))
    await app.wait_stage(handle, Stage.cancelled)
    await eventually(lambda: _status(app, open_item.id) != "open", timeout=5)
    assert (_status(app, open_item.id), _status(app, done_item.id)) == ("cancelled", "done")  # done stays done
    summary = await handle.result()
    assert [i.status.value for i in summary.items] == ["cancelled", "done"]

    [ticket] = app.store.local.tickets([open_item.ticket_key])
    assert ticket.status == "wont_do"
    assert any("this action item is cancelled" in c for c in app.store.local.ticket_comments(ticket.key))
    # nothing is owed any more: the digest does not list it, the sweep does not check it
    later = await app.now() + 30 * DAY
    assert open_item.id not in [i.id for i in app.store.records.overdue_items(later)]
    assert open_item.id not in [i.id for i in app.store.records.tracked_items()]


async def test_a_cancellation_request_cancels_the_lifecycle_and_its_items(app: App) -> None:
    inc = incident()
    handle, state = await to_following_up(app, inc, OPEN)
    [item] = state.items
    await _idle(app, item.id)
    await handle.cancel()
    summary = await handle.result()
    assert summary.stage == Stage.cancelled and summary.items[0].status.value == "cancelled"
    await eventually(lambda: _status(app, item.id) == "cancelled")
    [ticket] = app.store.local.tickets([item.ticket_key])
    assert ticket.status == "wont_do"
    assert any("this action item is cancelled" in c for c in app.store.local.ticket_comments(ticket.key))
    assert [k for k, *_ in app.outbox(inc.workflow_id)][-1] == "cancelled"  # the owner hears of it


async def test_close_on_cancel_false_leaves_the_ticket_open(time_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_app(time_env, tmp_path, extra="\n[tickets]\nclose_on_cancel = false\n") as app:
        handle, state = await to_following_up(app, incident(), OPEN)
        [item] = state.items
        await _idle(app, item.id)
        await handle.execute_update(PostmortemWorkflow.cancel, Cancellation(by="alice", reason="duplicate"))
        await handle.result()
        await eventually(lambda: _status(app, item.id) == "cancelled")
        [ticket] = app.store.local.tickets([item.ticket_key])
        assert ticket.status == "open"  # told, not closed
        assert any("the ticket is left as it is" in c for c in app.store.local.ticket_comments(ticket.key))


async def test_the_sweep_cancels_the_items_of_a_terminated_lifecycle(app: App) -> None:
    inc = incident()
    handle, state = await to_following_up(app, inc, OPEN)
    [item] = state.items
    await handle.terminate("cleaning up by hand")  # runs no workflow code
    # A real server terminates the children with their parent (ParentClosePolicy.TERMINATE); the time-skipping
    # test server does not apply the policy, so the test does what the server would.
    await app.client.get_workflow_handle(item.id).terminate("parent terminated")
    assert _status(app, item.id) == "open"

    summary = await sweep(app, "sweep-after-terminate")
    assert _status(app, item.id) == "cancelled"
    assert summary.cancelled == 1
    [ticket] = app.store.local.tickets([item.ticket_key])
    assert ticket.status == "wont_do"
    assert any("this action item is cancelled" in c for c in app.store.local.ticket_comments(ticket.key))
    again = await sweep(app, "sweep-again")
    assert again.items_checked == 0 and again.cancelled == 0  # checked no more
