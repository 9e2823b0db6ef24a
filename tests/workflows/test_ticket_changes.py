"""Tickets that change under closeloop's feet: closed as won't do without a reason (the owner is asked),
deleted while the item is still owed (opened again), moved to another key (followed)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete
from temporalio.client import WorkflowUpdateFailedError

from closeloop.models import ActionItemSpec, TicketStatusEvent, WontDoReason
from closeloop.store.tables import TicketRow
from closeloop.workflows.action_item import ActionItemWorkflow
from tests.temporal_env import DAY, App, eventually, incident, within
from tests.workflows.drive import to_following_up

ERIN_P4 = ActionItemSpec(title="Rewrite checkout", owner="erin", priority="P4")


async def _item(app: App, inc=None):  # type: ignore[no-untyped-def]
    inc = inc or incident()
    handle, state = await to_following_up(app, inc, ERIN_P4)
    item = state.items[0]
    return inc, handle, item, app.client.get_workflow_handle(item.id)


async def test_wont_do_without_a_reason_asks_the_owner_and_records_the_answer(app: App) -> None:
    inc, handle, item, h = await _item(app)
    closed_at = await app.now()
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(
        ticket_key=item.ticket_key, status="wont_do", at=closed_at, source="github", resolution="not_planned"))
    st = await app.wait_for(h, lambda s: s.phase == "awaiting_reason" and s.reason_due is not None)
    assert st.item.status.value == "wont_do"
    assert within(st.reason_due, closed_at + 3 * DAY, 120)  # the policy's verdict_timeout
    await eventually(lambda: [(k, who, key) for k, who, key, _at in app.outbox(inc.workflow_id)
                              if k == "wont_do_reason_request"]
                     == [("wont_do_reason_request", "erin", f"{item.id}/c0/wont_do_reason")])

    with pytest.raises(WorkflowUpdateFailedError) as stranger:
        await h.execute_update(ActionItemWorkflow.explain_wont_do, WontDoReason(by="bob", reason="not mine"))
    assert "only erin or alice can give the reason" in str(stranger.value.cause)

    answer = await h.execute_update(ActionItemWorkflow.explain_wont_do,
                                    WontDoReason(by="erin", reason="checkout is replaced by the new platform"))
    assert "closed as won't do" in answer
    st = await app.wait_for(h, lambda s: s.phase == "closed")
    assert st.item.verdict_note == "checkout is replaced by the new platform (closed as not_planned)"
    with pytest.raises(WorkflowUpdateFailedError) as again:
        await h.execute_update(ActionItemWorkflow.explain_wont_do, WontDoReason(by="erin", reason="twice"))
    assert "no reason is asked" in str(again.value.cause)
    await eventually(lambda: [i.verdict_note for i in app.store.records.action_items(status="wont_do")]
                     == [st.item.verdict_note])
    assert not any(k == "wont_do_unexplained" for k, *_ in app.outbox(inc.workflow_id))


async def test_wont_do_left_unexplained_closes_and_tells_the_owners_manager(app: App) -> None:
    inc, handle, item, h = await _item(app)
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(
        ticket_key=item.ticket_key, status="wont_do", at=await app.now(), source="jira", resolution="Won't Do"))
    st = await app.wait_for(h, lambda s: s.phase == "awaiting_reason" and s.reason_due is not None)
    due = st.reason_due
    await app.env.sleep(3 * DAY + timedelta(hours=1))
    st = await app.wait_for(h, lambda s: s.phase == "closed")
    assert st.item.verdict_note == "won't do (closed as Won't Do); no reason given by the deadline"
    await eventually(lambda: any(k == "wont_do_unexplained" for k, *_ in app.outbox(inc.workflow_id)))
    told = [(who, at) for k, who, _key, at in app.outbox(inc.workflow_id) if k == "wont_do_unexplained"]
    assert [who for who, _ in told] == ["carol"]  # erin's manager
    assert within(told[0][1], due, 120)


async def test_a_reason_given_with_the_close_is_not_asked_again(app: App) -> None:
    inc, handle, item, h = await _item(app)
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(
        ticket_key=item.ticket_key, status="wont_do", at=await app.now(), source="cli", reason="duplicate of OPS-7"))
    st = await app.wait_for(h, lambda s: s.phase == "closed")
    assert st.item.verdict_note == "duplicate of OPS-7"
    assert not any(k.startswith("wont_do") for k, *_ in app.outbox(inc.workflow_id))


async def test_reopened_while_the_reason_is_asked_goes_back_to_tracking(app: App) -> None:
    inc, handle, item, h = await _item(app)
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(
        ticket_key=item.ticket_key, status="wont_do", at=await app.now(), source="github", resolution="not_planned"))
    await app.wait_for(h, lambda s: s.phase == "awaiting_reason" and s.reason_due is not None)
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(
        ticket_key=item.ticket_key, status="reopened", at=await app.now(), source="github"))
    st = await app.wait_for(h, lambda s: s.phase == "tracking")
    assert st.item.status.value == "open" and st.cycle == 1 and st.item.verdict_note == ""
    await eventually(lambda: [i.id for i in app.store.records.action_items(status="open")] == [item.id])


async def test_deleted_ticket_of_an_open_item_is_opened_again_and_the_owner_told(app: App) -> None:
    inc, handle, item, h = await _item(app)
    other = app.store.local.create_ticket(marker="elsewhere", title="Unrelated", body="", assignee="bob",
                                          priority="P3", due_at=item.due_at)
    with app.store.db.session() as s:  # somebody deletes the ticket on the tracker
        s.execute(delete(TicketRow).where(TicketRow.key == item.ticket_key))
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(
        ticket_key=item.ticket_key, status="deleted", at=await app.now(), source="sweep"))
    st = await app.wait_for(h, lambda s: s.tickets_replaced == 1 and s.item.ticket_key != item.ticket_key)
    new_key = st.item.ticket_key
    assert st.phase == "tracking" and st.item.status.value == "open"
    assert sorted(t.key for t in app.store.local.tickets()) == sorted([other.key, new_key])
    assert new_key not in (item.ticket_key, other.key)
    await eventually(lambda: getattr(app.store.records.action_item_by_ticket("local", new_key), "id", None) == item.id)
    await eventually(lambda: [(who, key) for k, who, key, _at in app.outbox(inc.workflow_id) if k == "ticket_recreated"]
                     == [("erin", f"{item.id}/c0/ticket_recreated/1")])

    # A second "deleted" for the old key (a late webhook) is for another ticket: ignored.
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(
        ticket_key=item.ticket_key, status="deleted", at=await app.now(), source="webhook"))
    st = await app.wait_for(h, lambda s: s.sync_events == 2)
    assert st.tickets_replaced == 1 and len(app.store.local.tickets()) == 2


async def test_a_deleted_report_for_a_ticket_that_still_exists_opens_nothing(app: App) -> None:
    inc, handle, item, h = await _item(app)
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(
        ticket_key=item.ticket_key, status="deleted", at=await app.now(), source="sweep"))
    st = await app.wait_for(h, lambda s: s.tickets_replaced == 1)
    assert st.item.ticket_key == item.ticket_key and st.phase == "tracking"
    assert len(app.store.local.tickets()) == 1  # found by its marker: no second ticket
    assert not any(k == "ticket_recreated" for k, *_ in app.outbox(inc.workflow_id))


async def test_moved_ticket_is_followed_under_its_new_key(app: App) -> None:
    inc, handle, item, h = await _item(app)
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(
        ticket_key=item.ticket_key, status="open", at=await app.now(), source="jira", moved_to="PLAT-12"))
    st = await app.wait_for(h, lambda s: s.item.ticket_key == "PLAT-12")
    assert st.phase == "tracking" and st.item.status.value == "open"
    await app.wait_for(h, lambda s: s.ticket_change is None)
    await eventually(lambda: getattr(app.store.records.action_item_by_ticket("local", "PLAT-12"), "id", None)
                     == item.id)

    # The old key is no longer this item's; the new one is.
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(
        ticket_key=item.ticket_key, status="done", at=await app.now(), source="jira"))
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(
        ticket_key="PLAT-12", status="done", at=await app.now(), source="jira"))
    st = await app.wait_for(h, lambda s: s.phase == "waiting_effectiveness")
    assert st.item.status.value == "done" and st.sync_events == 3


async def test_a_move_that_comes_with_a_close_completes_the_item(app: App) -> None:
    inc, handle, item, h = await _item(app)
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(
        ticket_key=item.ticket_key, status="done", at=await app.now(), source="sweep", moved_to="PLAT-13"))
    st = await app.wait_for(h, lambda s: s.phase == "waiting_effectiveness")
    assert st.item.ticket_key == "PLAT-13" and st.item.status.value == "done"


async def test_completing_in_closeloop_closes_the_ticket(app: App) -> None:
    from closeloop.models import CompleteItem

    inc, handle, item, h = await _item(app)
    await h.execute_update(ActionItemWorkflow.complete, CompleteItem(by="erin", note="shipped"))
    await app.wait_for(h, lambda s: s.phase == "waiting_effectiveness" and not s.completed_here)
    await eventually(lambda: [t.status for t in app.store.local.tickets([item.ticket_key])] == ["done"])
    # the ticket reopened afterwards is a real reopening: the completion is revoked
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(
        ticket_key=item.ticket_key, status="reopened", at=await app.now(), source="cli"))
    st = await app.wait_for(h, lambda s: s.phase == "tracking" and s.cycle == 1)
    assert st.item.status.value == "open" and not st.completed_here
