"""The draft chase: reminders on the cadence, escalation up the chain, extensions, reassignment,
changes requested, and a months-long chase that continues-as-new with bounded history."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from closeloop import search_attributes as sa
from closeloop.models import (
    ExtensionRequest,
    Reassignment,
    ReviewDecision,
    ReviewVote,
    Stage,
)
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.temporal_env import DAY, App, eventually, incident, within
from tests.workflows.drive import approve_all, draft


def chase_log(app: App, postmortem_id: str, t0) -> list[tuple[str, str, float]]:  # type: ignore[no-untyped-def]
    """(kind, recipient, days since drafting started) of reminders and escalations, in order."""
    return [(k, who, round((at - t0) / DAY, 2)) for k, who, _key, at in app.outbox(postmortem_id)
            if k in ("reminder", "escalation")]


async def test_ignored_reminders_escalate_up_the_chain_in_order(app: App) -> None:
    inc = incident()
    handle = await app.resolve(inc)
    state = await app.wait_stage(handle, Stage.drafting)
    t0 = state.draft_chase.started_at
    assert within(state.draft_chase.due_at, t0 + 5 * DAY, 1)

    await app.env.sleep(11 * DAY + timedelta(hours=1))
    state = await app.wait_for(handle, lambda s: s.draft_chase.reminders_sent == 11)

    log = chase_log(app, inc.workflow_id, t0)
    assert [(k, who, round(d)) for k, who, d in log] == [
        ("reminder", "alice", 1), ("reminder", "alice", 2), ("reminder", "alice", 3), ("reminder", "alice", 4),
        ("escalation", "alice", 5), ("reminder", "alice", 5),   # due: stalled, the owner is told first
        ("reminder", "alice", 6),
        ("escalation", "carol", 7), ("reminder", "alice", 7),   # +2d: the owner's manager
        ("reminder", "alice", 8), ("reminder", "alice", 9),
        ("escalation", "dave", 10), ("reminder", "alice", 10),  # +5d: the next level up
        ("reminder", "alice", 11),
    ]
    assert all(abs(d - round(d)) < 0.01 for _k, _w, d in log), log  # on the day, to the minute
    assert state.stalled and state.draft_chase.escalations_sent == 3
    described = await handle.describe()
    assert described.typed_search_attributes.get(sa.STALLED) is True
    assert described.typed_search_attributes.get(sa.STAGE) == "drafting"
    await eventually(lambda: app.store.records.get_postmortem(inc.workflow_id).stalled is True)

    # the draft finally arrives: no longer stalled, review starts
    await handle.execute_update(PostmortemWorkflow.submit_draft, draft())
    await app.wait_stage(handle, Stage.in_review)
    described = await handle.describe()
    assert described.typed_search_attributes.get(sa.STALLED) is False
    await eventually(lambda: app.store.records.get_postmortem(inc.workflow_id).stalled is False)


async def test_extension_within_policy_moves_the_due_date_and_beyond_is_refused(app: App) -> None:
    inc = incident()
    handle = await app.resolve(inc)
    state = await app.wait_stage(handle, Stage.drafting)
    t0 = state.draft_chase.started_at

    await app.env.sleep(DAY + timedelta(hours=12))
    msg = await handle.execute_update(PostmortemWorkflow.request_extension,
                                      ExtensionRequest(by="alice", extra=timedelta(days=3),
                                                       reason="waiting on vendor RCA"))
    assert "due" in msg
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(PostmortemWorkflow.request_extension,
                                    ExtensionRequest(by="alice", extra=timedelta(days=2), reason="more"))
    assert "policy allows 4d in all, 1d left" in str(refused.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as not_owner:
        await handle.execute_update(PostmortemWorkflow.request_extension,
                                    ExtensionRequest(by="bob", extra=timedelta(days=1), reason="x"))
    assert "only the owner" in str(not_owner.value.cause)
    await handle.execute_update(PostmortemWorkflow.request_extension,
                                ExtensionRequest(by="alice", extra=timedelta(days=1), reason="one more day"))
    state = await handle.query(PostmortemWorkflow.state)
    assert within(state.draft_chase.due_at, t0 + 9 * DAY, 1)
    assert state.extended_by == timedelta(days=4) and len(state.extensions) == 2

    await app.env.sleep(8 * DAY)  # to t0 + 9.5d
    await app.wait_for(handle, lambda s: s.draft_chase.escalations_sent == 1)
    escalations = [(who, round((at - t0) / DAY, 2)) for k, who, _key, at in app.outbox(inc.workflow_id)
                   if k == "escalation"]
    assert escalations == [("alice", 9.0)]  # not at day 5: the extension moved it


async def test_reassigning_the_owner_moves_the_chase(app: App) -> None:
    inc = incident()
    handle = await app.resolve(inc)
    state = await app.wait_stage(handle, Stage.drafting)
    t0 = state.draft_chase.started_at
    await app.env.sleep(DAY + timedelta(hours=1))
    with pytest.raises(WorkflowUpdateFailedError) as unknown:
        await handle.execute_update(PostmortemWorkflow.reassign_owner, Reassignment(by="carol", new_owner="zed"))
    assert "unknown person 'zed'" in str(unknown.value.cause)
    await handle.execute_update(PostmortemWorkflow.reassign_owner,
                                Reassignment(by="carol", new_owner="erin", reason="alice is on leave"))
    await app.env.sleep(DAY)
    await app.wait_for(handle, lambda s: s.draft_chase.reminders_sent == 2)
    reminders = [(k, who, round((at - t0) / DAY)) for k, who, d, at in app.outbox(inc.workflow_id)
                 if k in ("reminder", "reassigned")]
    assert reminders == [("reminder", "alice", 1), ("reassigned", "erin", 1), ("reminder", "erin", 2)]
    described = await handle.describe()
    assert described.typed_search_attributes.get(sa.OWNER) == "erin"
    with pytest.raises(WorkflowUpdateFailedError):  # the old owner can no longer submit
        await handle.execute_update(PostmortemWorkflow.submit_draft, draft(by="alice"))
    await handle.execute_update(PostmortemWorkflow.submit_draft, draft(by="erin"))
    await app.wait_stage(handle, Stage.in_review)
    # erin owns it now, so she does not review it: bob's approval is enough
    with pytest.raises(WorkflowUpdateFailedError) as own:
        await handle.execute_update(PostmortemWorkflow.review,
                                    ReviewVote(reviewer="erin", decision=ReviewDecision.approve))
    assert "not a reviewer" in str(own.value.cause)
    await handle.execute_update(PostmortemWorkflow.review, ReviewVote(reviewer="bob", decision=ReviewDecision.approve))
    assert (await handle.result()).stage == Stage.closed


async def test_changes_requested_returns_to_drafting_and_restarts_reminders(app: App) -> None:
    inc = incident()
    handle = await app.resolve(inc)
    await app.wait_stage(handle, Stage.drafting)
    await handle.execute_update(PostmortemWorkflow.submit_draft, draft())
    await app.wait_stage(handle, Stage.in_review)

    for bad, reason in [
        (ReviewVote(reviewer="carol", decision=ReviewDecision.approve), "not a reviewer"),
        (ReviewVote(reviewer="bob", decision=ReviewDecision.request_changes), "comment is required"),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as rejected:
            await handle.execute_update(PostmortemWorkflow.review, bad)
        assert reason in str(rejected.value.cause)
    await handle.execute_update(PostmortemWorkflow.review, ReviewVote(reviewer="erin", decision=ReviewDecision.approve))
    with pytest.raises(WorkflowUpdateFailedError) as twice:
        await handle.execute_update(PostmortemWorkflow.review,
                                    ReviewVote(reviewer="erin", decision=ReviewDecision.approve))
    assert "already voted in review round 1" in str(twice.value.cause)
    await handle.execute_update(PostmortemWorkflow.review, ReviewVote(
        reviewer="bob", decision=ReviewDecision.request_changes, comment="root cause is a symptom; dig deeper"))

    state = await app.wait_stage(handle, Stage.drafting)
    t1 = state.draft_chase.started_at
    assert state.review_round == 1 and state.drafts_submitted == 1
    assert within(state.draft_chase.due_at, t1 + 5 * DAY, 1)
    await app.env.sleep(DAY + timedelta(hours=1))
    await app.wait_for(handle, lambda s: s.draft_chase.reminders_sent == 1)
    keys = [(k, who, key.rsplit("/", 3)[-3:]) for k, who, key, _at in app.outbox(inc.workflow_id)
            if k in ("changes_requested", "reminder")]
    assert keys == [("changes_requested", "alice", ["review", "1", "changes"]),
                    ("reminder", "alice", ["1", "reminder", "0"])]

    await handle.execute_update(PostmortemWorkflow.submit_draft, draft())
    state = await app.wait_stage(handle, Stage.in_review)
    assert state.review_round == 2
    await approve_all(handle)
    summary = await handle.result()
    assert summary.stage == Stage.closed and summary.review_rounds == 2
    votes = [(r.round, r.reviewer, r.decision) for r in app.store.records.reviews(inc.workflow_id)]
    assert votes == [(1, "erin", "approve"), (1, "bob", "request_changes"), (2, "bob", "approve"),
                     (2, "erin", "approve")]
    stages = [c.stage for c in (await handle.query(PostmortemWorkflow.state)).stages]
    assert stages == [Stage.scheduling, Stage.collecting_timeline, Stage.drafting, Stage.in_review, Stage.drafting,
                      Stage.in_review, Stage.published, Stage.following_up, Stage.closed]


async def test_months_long_chase_continues_as_new_with_bounded_history(app: App) -> None:
    inc = incident()
    cap = 150
    handle = await app.resolve(inc, max_history_events=cap)
    state = await app.wait_stage(handle, Stage.drafting)
    t0 = state.draft_chase.started_at
    first_run = (await handle.describe()).run_id

    await app.env.sleep(120 * DAY + timedelta(hours=1))  # four months of silence
    state = await app.wait_for(handle, lambda s: s.draft_chase.reminders_sent == 120, timeout=120)
    assert state.runs > 3

    # walk the chain of runs: every run's history stayed under the cap
    run_id, lengths = first_run, []
    while run_id:
        history = await app.client.get_workflow_handle(inc.workflow_id, run_id=run_id).fetch_history()
        lengths.append(len(history.events))
        last = history.events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.HasField("workflow_execution_continued_as_new_event_attributes") else None)
    assert len(lengths) == state.runs
    assert max(lengths) <= cap + 25, lengths  # the check runs after each action; one action's events of slack

    # nothing lost or repeated across the runs: reminders 0..119 exactly once, escalations once each
    keys = [key for kind, _who, key, _at in app.outbox(inc.workflow_id) if kind == "reminder"]
    assert keys == [f"{inc.workflow_id}/draft/0/reminder/{n}" for n in range(120)]
    times = [at for kind, _w, _k, at in app.outbox(inc.workflow_id) if kind == "reminder"]
    assert all(within(at, t0 + (n + 1) * DAY) for n, at in enumerate(times))
    escalated = [who for kind, who, _k, _at in app.outbox(inc.workflow_id) if kind == "escalation"]
    assert escalated == ["alice", "carol", "dave"]

    # and the lifecycle still works after all those runs
    await handle.execute_update(PostmortemWorkflow.submit_draft, draft())
    await app.wait_stage(handle, Stage.in_review)
    await approve_all(handle)
    assert (await handle.result()).stage == Stage.closed


async def test_the_owner_snoozes_the_draft_reminders_and_escalation_keeps_its_date(app: App) -> None:
    from closeloop.models import SnoozeRequest

    inc = incident()
    handle = await app.resolve(inc)
    state = await app.wait_stage(handle, Stage.drafting)
    t0 = state.draft_chase.started_at
    await app.env.sleep(DAY + timedelta(hours=1))
    await app.wait_for(handle, lambda s: s.draft_chase.reminders_sent == 1)
    with pytest.raises(WorkflowUpdateFailedError) as not_owner:
        await handle.execute_update(PostmortemWorkflow.snooze, SnoozeRequest(by="bob"))
    assert "only the owner (alice)" in str(not_owner.value.cause)
    answer = await handle.execute_update(PostmortemWorkflow.snooze, SnoozeRequest(by="alice", hours=48))
    assert answer.startswith("draft reminders snoozed until ")
    await app.env.sleep(3 * DAY)  # to t0 + 4d 1h
    state = await app.wait_for(handle, lambda s: s.draft_chase.reminders_sent >= 2)
    log = chase_log(app, inc.workflow_id, t0)
    reminders = [d for k, _w, d in log if k == "reminder"]
    # day 1, then none until the snooze ends (day 3 + 1h), then the cadence again (day 4)
    assert [round(d, 2) for d in reminders] == [1.0, round(3 + 1 / 24, 2), 4.0], log
    await app.env.sleep(DAY + timedelta(hours=1))  # past the due date (day 5): the escalation is not snoozed
    await app.wait_for(handle, lambda s: s.draft_chase.escalations_sent >= 1)
    escalations = [d for k, _w, d in chase_log(app, inc.workflow_id, t0) if k == "escalation"]
    assert escalations and round(escalations[0], 2) == 5.0
