"""The review meeting follows the postmortem: a new owner is added to it (the same event, updated), and it moves
to another slot when they cannot make its own; a cancelled postmortem cancels it. On the built-in calendar here
(the CalDAV and Google calendars' reschedule and cancel are tested against their servers in tests/integrations)."""

from __future__ import annotations

from closeloop.ids import meeting_key
from closeloop.models import Cancellation, Reassignment, Stage
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.temporal_env import App, incident


async def test_a_new_owner_joins_the_meeting_and_it_moves_if_they_are_busy(app: App) -> None:
    inc = incident()
    handle = await app.resolve(inc)
    state = await app.wait_stage(handle, Stage.drafting)
    booked = state.meeting
    assert booked is not None and "carol" not in booked.attendees
    # carol (alice's manager, not invited so far) is busy in that very slot
    app.store.local.add_busy_block("carol", booked.start, booked.end, "1:1s")
    await handle.execute_update(PostmortemWorkflow.reassign_owner,
                                Reassignment(by="carol", new_owner="carol", reason="alice is on leave"))
    state = await handle.query(PostmortemWorkflow.state)
    moved = state.meeting
    assert moved is not None and "carol" in moved.attendees
    assert moved.start >= booked.end or moved.end <= booked.start  # not the slot carol is busy in
    row = app.store.local.meeting_by_key(meeting_key(inc.workflow_id))
    assert row is not None and (row.start, row.end) == (moved.start, moved.end)
    assert sorted(row.attendees) == sorted(moved.attendees)
    assert moved.calendar_ref == booked.calendar_ref  # the same meeting, moved: never a second booking

    # erin takes it over; she is invited already and free then: the meeting stays where it is
    await handle.execute_update(PostmortemWorkflow.reassign_owner, Reassignment(by="carol", new_owner="erin"))
    again = (await handle.query(PostmortemWorkflow.state)).meeting
    assert again is not None and (again.start, again.end) == (moved.start, moved.end)


async def test_a_cancelled_postmortem_cancels_its_meeting(app: App) -> None:
    inc = incident()
    handle = await app.resolve(inc)
    await app.wait_stage(handle, Stage.drafting)
    assert app.store.local.meeting_by_key(meeting_key(inc.workflow_id)) is not None
    await handle.execute_update(PostmortemWorkflow.cancel, Cancellation(by="alice", reason="duplicate of INC-1"))
    await app.wait_stage(handle, Stage.cancelled)
    assert app.store.local.meeting_by_key(meeting_key(inc.workflow_id)) is None  # the slot is free again
