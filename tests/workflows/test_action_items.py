"""Action items: one ticket each, reminders before the deadline, escalation after it, completion by a
person or by tracker sync, and the effectiveness review with and without a recurrence."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from closeloop import search_attributes as sa
from closeloop.models import ActionItemSpec, CompleteItem, Stage, TicketStatusEvent, VerdictInput
from closeloop.workflows.action_item import ActionItemWorkflow
from tests.temporal_env import DAY, App, eventually, incident, within
from tests.workflows.drive import to_following_up

P1_BOB = ActionItemSpec(title="Validate config before push", owner="bob", priority="P1", kind="prevent")


async def test_overdue_item_is_reminded_then_escalated_up_the_chain(app: App) -> None:
    inc = incident()
    handle, state = await to_following_up(app, inc, P1_BOB)
    item = state.items[0]
    h = app.client.get_workflow_handle(item.id)
    opened = (await h.query(ActionItemWorkflow.state)).chase.started_at
    assert within(item.due_at, opened + 7 * DAY)  # P1: 7 days

    await app.env.sleep(13 * DAY)
    st = await app.wait_for(h, lambda s: s.chase.reminders_sent >= 6 and s.chase.escalations_sent == 3)
    log = [(k, who, round((at - item.due_at) / DAY, 2)) for k, who, _key, at in app.outbox(inc.workflow_id)
           if k.startswith("item_")]
    assert log == [
        ("item_opened", "bob", -7.0),
        # the 7-days-before reminder would fall on the opening day itself: skipped, not sent late
        ("item_reminder", "bob", -1.0),
        ("item_escalation", "bob", 0.0),     # due: overdue, stalled, the owner is told
        ("item_reminder", "bob", 1.0),
        ("item_escalation", "carol", 2.0),   # the owner's manager
        ("item_reminder", "bob", 2.0),
        ("item_reminder", "bob", 3.0),
        ("item_reminder", "bob", 4.0),
        ("item_escalation", "dave", 5.0),    # the next level
        ("item_reminder", "bob", 5.0),
        ("item_reminder", "bob", 6.0),
    ]
    assert st.chase.stalled
    assert (await h.describe()).typed_search_attributes.get(sa.STALLED) is True
    # reminders and escalations also land on the ticket, as comments
    comments = app.store.local.ticket_comments(item.ticket_key)
    assert len(comments) == len(log) and comments[0].startswith("Action item assigned")
    assert sum(c.startswith("Escalation") or "escalat" in c.split("\n")[0].lower() for c in comments) == 3

    with pytest.raises(WorkflowUpdateFailedError) as who:
        await h.execute_update(ActionItemWorkflow.complete, CompleteItem(by="erin"))
    assert "only bob (item owner) or alice (postmortem owner)" in str(who.value.cause)
    await h.execute_update(ActionItemWorkflow.complete, CompleteItem(by="bob", note="shipped"))
    st = await app.wait_for(h, lambda s: s.phase == "waiting_effectiveness")
    assert (await h.describe()).typed_search_attributes.get(sa.STALLED) is False
    await eventually(lambda: app.store.records.action_items(inc.workflow_id)[0].status.value == "done")


async def test_reopened_ticket_revokes_completion(app: App) -> None:
    inc = incident()
    handle, state = await to_following_up(app, inc, P1_BOB)
    item = state.items[0]
    h = app.client.get_workflow_handle(item.id)
    now = await app.now()
    await h.signal(ActionItemWorkflow.ticket_status,
                   TicketStatusEvent(ticket_key=item.ticket_key, status="done", at=now))
    await app.wait_for(h, lambda s: s.phase == "waiting_effectiveness")
    await app.env.sleep(2 * DAY)
    await h.signal(ActionItemWorkflow.ticket_status,
                   TicketStatusEvent(ticket_key=item.ticket_key, status="reopened", at=now))
    st = await app.wait_for(h, lambda s: s.phase == "tracking")
    assert st.item.status.value == "open" and st.item.completed_at is None and st.cycle == 1
    # a signal for some other ticket changes nothing
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(ticket_key="LOCAL-999", status="done", at=now))
    await h.signal(ActionItemWorkflow.ticket_status,
                   TicketStatusEvent(ticket_key=item.ticket_key, status="done", at=now))
    st = await app.wait_for(h, lambda s: s.phase == "waiting_effectiveness")
    assert st.sync_events == 4


async def test_effectiveness_review_flags_a_recurrence_and_notifies_the_chain(app: App) -> None:
    inc = incident()
    handle, state = await to_following_up(app, inc, P1_BOB)
    item = state.items[0]
    h = app.client.get_workflow_handle(item.id)
    await h.execute_update(ActionItemWorkflow.complete, CompleteItem(by="bob"))
    st = await app.wait_for(h, lambda s: s.phase == "waiting_effectiveness")
    completed = st.item.completed_at
    assert within(st.check_at, completed + 14 * DAY, 1)

    # five days later the same kind of incident happens again (same service); SEV4 needs no postmortem,
    # but it is recorded, and that is what the recurrence check finds
    await app.env.sleep(5 * DAY)
    again = incident(severity="SEV4", title="Checkout 500s again", started_at=await app.now())
    repeat = await app.resolve(again)
    assert (await repeat.result()).stage == Stage.skipped

    await app.env.sleep(9 * DAY + timedelta(hours=1))
    st = await app.wait_for(h, lambda s: s.phase == "awaiting_verdict")
    assert st.item.recurrences == [again.key]
    await h.execute_update(ActionItemWorkflow.verdict, VerdictInput(by="bob", effective=True, note="looks fine to me"))
    summary = await handle.result()
    assert summary.ineffective == 1 and summary.effective == 0
    final = summary.items[0]
    assert final.verdict.value == "ineffective"
    assert final.verdict_note == f"recurred: {again.key}; owner said: looks fine to me"
    flagged = [(who, at) for k, who, _key, at in app.outbox(inc.workflow_id) if k == "ineffective"]
    assert [who for who, _ in flagged] == ["bob", "carol", "dave", "alice"]  # owner, manager, skip level, PM owner
    assert all(within(at, completed + 14 * DAY + timedelta(hours=1), 300) for _, at in flagged)  # on the verdict


async def test_effectiveness_review_without_recurrence_and_without_verdict_times_out_unknown(app: App) -> None:
    inc = incident(services=["search"], title="Search latency")
    handle, state = await to_following_up(app, inc, P1_BOB)
    item = state.items[0]
    h = app.client.get_workflow_handle(item.id)
    await h.execute_update(ActionItemWorkflow.complete, CompleteItem(by="alice"))  # the PM owner may too
    st = await app.wait_for(h, lambda s: s.phase == "waiting_effectiveness")
    with pytest.raises(WorkflowUpdateFailedError) as early:
        await h.execute_update(ActionItemWorkflow.verdict, VerdictInput(by="bob", effective=True))
    assert "no effectiveness review is open" in str(early.value.cause)

    await app.env.sleep(14 * DAY + timedelta(hours=1))
    st = await app.wait_for(h, lambda s: s.phase == "awaiting_verdict")
    assert st.item.recurrences == []
    verdict_due = st.verdict_due
    await app.env.sleep(3 * DAY + timedelta(hours=1))  # the owner never answers
    summary = await handle.result()
    assert summary.items[0].verdict.value == "unknown" and summary.ineffective == 0
    assert not any(k == "ineffective" for k, *_ in app.outbox(inc.workflow_id))
    assert within(summary.closed_at, verdict_due, 120)


async def test_wont_do_closes_the_item_with_its_reason(app: App) -> None:
    inc = incident()
    handle, state = await to_following_up(app, inc, P1_BOB,
                                          ActionItemSpec(title="Rewrite checkout", owner="erin", priority="P4"))
    wont = state.items[1]
    h = app.client.get_workflow_handle(wont.id)
    await h.signal(ActionItemWorkflow.ticket_status, TicketStatusEvent(
        ticket_key=wont.ticket_key, status="wont_do", at=await app.now(), reason="superseded by the platform move"))
    st = await app.wait_for(h, lambda s: s.phase == "closed")
    assert st.item.status.value == "wont_do" and st.item.verdict_note == "superseded by the platform move"
    assert len(app.store.local.tickets()) == 2


async def test_item_overdue_for_months_continues_as_new_and_keeps_its_place(app: App) -> None:
    inc = incident()
    handle = await app.resolve(inc, max_history_events=150)
    await app.wait_stage(handle, Stage.drafting)
    from closeloop.workflows.postmortem import PostmortemWorkflow
    from tests.workflows.drive import approve_all, draft

    await handle.execute_update(PostmortemWorkflow.submit_draft, draft(P1_BOB))
    await app.wait_stage(handle, Stage.in_review)
    await approve_all(handle)
    state = await app.wait_for(handle, lambda s: s.items and s.items[0].ticket_key)
    item = state.items[0]
    h = app.client.get_workflow_handle(item.id)

    await app.env.sleep(120 * DAY)  # nobody touches the item for four months
    st = await app.wait_for(h, lambda s: s.runs > 1 and s.chase.reminders_sent >= 100, timeout=120)
    keys = [key for kind, _w, key, _at in app.outbox(inc.workflow_id) if kind == "item_reminder"]
    assert keys == [f"{item.id}/c0/reminder/{n}" for n in range(1, len(keys) + 1)]  # no gap, no repeat
    assert len(app.store.local.tickets()) == 1  # the new runs did not open another ticket
    await h.execute_update(ActionItemWorkflow.complete, CompleteItem(by="bob"))
    await app.wait_for(h, lambda s: s.phase == "waiting_effectiveness")
    assert st.item.ticket_key == item.ticket_key


async def test_the_item_owner_snoozes_its_reminders(app: App) -> None:
    from closeloop.models import SnoozeRequest
    from closeloop.workflows.action_item import ActionItemWorkflow

    spec = ActionItemSpec(title="Add a canary stage", owner="bob", priority="P1")
    handle, state = await to_following_up(app, incident(), spec)
    item = app.client.get_workflow_handle_for(ActionItemWorkflow.run, state.items[0].id)
    await app.wait_for(item, lambda s: s.phase == "tracking")
    with pytest.raises(WorkflowUpdateFailedError) as not_owner:
        await item.execute_update(ActionItemWorkflow.snooze, SnoozeRequest(by="alice"))
    assert "only bob (item owner) can snooze" in str(not_owner.value.cause)
    answer = await item.execute_update(ActionItemWorkflow.snooze, SnoozeRequest(by="bob", hours=168))
    assert answer.startswith(f"reminders for {state.items[0].id} snoozed until ")
    snoozed = (await item.query(ActionItemWorkflow.state)).chase.snoozed_until
    # P1: due in 7 days, reminded 1 day before; the week-long snooze holds that reminder back to its end
    def item_reminders() -> list[object]:
        return [at for kind, _who, key, at in app.outbox(handle.id) if kind == "item_reminder"]

    await app.env.sleep(6 * DAY + timedelta(hours=12))
    await app.wait_for(item, lambda s: s.phase == "tracking")
    assert item_reminders() == []  # not at due - 1d
    await app.env.sleep(DAY)
    await app.wait_for(item, lambda s: s.chase.snoozed_until is None)
    [at] = item_reminders()
    assert snoozed is not None and within(at, snoozed, 60)  # once, when the snooze ended
