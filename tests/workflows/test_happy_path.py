"""A whole lifecycle on the time-skipping server, nothing mocked: resolve -> meeting -> timeline -> draft ->
review -> publish -> tickets -> completion -> effectiveness review -> closed."""

from __future__ import annotations

from datetime import timedelta

from closeloop.models import (
    ActionItemSpec,
    CompleteItem,
    DraftSubmission,
    ReviewDecision,
    ReviewVote,
    Stage,
    TicketStatusEvent,
    VerdictInput,
)
from closeloop.workflows.action_item import ActionItemWorkflow
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.temporal_env import DAY, App, incident, within


async def test_happy_path(app: App) -> None:
    now = await app.now()
    inc = incident(started_at=now - timedelta(hours=2), detected_at=now - timedelta(hours=1, minutes=50),
                   mitigated_at=now - timedelta(hours=1), resolved_at=now - timedelta(minutes=5))
    handle = await app.resolve(inc)
    state = await app.wait_stage(handle, Stage.drafting)
    t0 = state.draft_chase.started_at

    # scheduling: a slot inside everyone's working hours, within the window; an invite per attendee
    meeting = state.meeting
    assert meeting is not None and meeting.attendees == ["alice", "bob", "erin"]
    assert meeting.end - meeting.start == timedelta(hours=1)
    assert meeting.start >= state.stages[0].at and meeting.start - state.stages[0].at <= timedelta(days=9)
    # Berlin, London and New York overlap 14:00-16:00 UTC (winter) / 13:00-15:00 (summer)
    assert 13 <= meeting.start.hour <= 15
    # timeline collected from the incident facts
    assert [e.kind for e in state.timeline] == ["start", "detection", "mitigation", "resolution"]
    assert state.draft_ref and state.draft_ref.endswith(".md")

    # the author submits the draft after two days: two reminders went out before that
    await app.env.sleep(2 * DAY + timedelta(hours=1))
    draft = DraftSubmission(
        by="alice", summary="Checkout failed for 40 minutes.", root_cause="A bad config push.",
        action_items=[
            ActionItemSpec(title="Validate config before push", owner="bob", priority="P1", kind="prevent"),
            ActionItemSpec(title="Alert on checkout 5xx", owner="erin", priority="P2", kind="detect"),
        ],
    )
    await handle.execute_update(PostmortemWorkflow.submit_draft, draft)
    await app.wait_stage(handle, Stage.in_review)
    await handle.execute_update(PostmortemWorkflow.review, ReviewVote(reviewer="bob", decision=ReviewDecision.approve))
    await handle.execute_update(PostmortemWorkflow.review, ReviewVote(reviewer="erin", decision=ReviewDecision.approve))
    state = await app.wait_for(handle, lambda s: s.stage == Stage.following_up and len(s.items) == 2
                               and all(i.ticket_key for i in s.items))
    assert state.document_ref and state.document_ref.endswith(".html")
    assert sorted(i.ticket_key for i in state.items) == ["LOCAL-1", "LOCAL-2"]
    assert len(app.store.local.tickets()) == 2

    # one item is completed by its owner, the other through the tracker (sync Signal)
    item1, item2 = state.items
    h1 = app.client.get_workflow_handle(item1.id)
    h2 = app.client.get_workflow_handle(item2.id)
    await h1.execute_update(ActionItemWorkflow.complete, CompleteItem(by="bob"))
    await h2.signal(ActionItemWorkflow.ticket_status,
                    TicketStatusEvent(ticket_key=item2.ticket_key, status="done", at=await app.now()))
    await app.wait_for(h2, lambda s: s.phase == "waiting_effectiveness")

    # 14 days later the effectiveness review asks the owners; no recurrence; both say it worked
    await app.env.sleep(14 * DAY + timedelta(hours=1))
    for h, owner in ((h1, "bob"), (h2, "erin")):
        await app.wait_for(h, lambda s: s.phase == "awaiting_verdict")
        await h.execute_update(ActionItemWorkflow.verdict, VerdictInput(by=owner, effective=True, note="no repeats"))

    summary = await handle.result()
    assert summary.stage == Stage.closed
    assert summary.effective == 2 and summary.ineffective == 0
    assert [i.verdict.value for i in summary.items] == ["effective", "effective"]

    kinds = [(kind, who) for kind, who, _key, _at in app.outbox(inc.workflow_id)]
    assert kinds[:3] == [("invite", "alice"), ("invite", "bob"), ("invite", "erin")]
    assert kinds[3:6] == [("draft_requested", "alice"), ("reminder", "alice"), ("reminder", "alice")]
    times = {key: at for _k, _w, key, at in app.outbox(inc.workflow_id)}
    assert within(times[f"{inc.workflow_id}/draft/0/reminder/0"], t0 + DAY)
    assert within(times[f"{inc.workflow_id}/draft/0/reminder/1"], t0 + 2 * DAY)
    assert ("review_request", "bob") in kinds and ("review_request", "erin") in kinds
    assert kinds.count(("published", "alice")) == 1
    assert ("item_opened", "bob") in kinds and ("item_opened", "erin") in kinds
    assert ("verdict_request", "bob") in kinds and ("verdict_request", "erin") in kinds
    assert not any(k == "escalation" for k, _ in kinds)
