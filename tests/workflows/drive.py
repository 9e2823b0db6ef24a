"""Steps that drive a lifecycle the way people would, through the workflows' Updates."""

from __future__ import annotations

from typing import Any

from temporalio.client import WorkflowHandle

from closeloop.models import ActionItemSpec, DraftSubmission, Incident, ReviewDecision, ReviewVote, Stage
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.temporal_env import App


def draft(*items: ActionItemSpec, by: str = "alice") -> DraftSubmission:
    return DraftSubmission(by=by, summary="Checkout failed for 40 minutes.", root_cause="A bad config push.",
                           action_items=list(items))


async def approve_all(handle: WorkflowHandle[Any, Any], reviewers: tuple[str, ...] = ("bob", "erin")) -> None:
    for reviewer in reviewers:
        await handle.execute_update(PostmortemWorkflow.review, ReviewVote(reviewer=reviewer,
                                                                           decision=ReviewDecision.approve))


async def to_following_up(app: App, inc: Incident, *items: ActionItemSpec) -> tuple[WorkflowHandle[Any, Any], Any]:
    """Resolve, draft at once, approve: returns the handle and the state once every ticket is open."""
    handle = await app.resolve(inc)
    await app.wait_stage(handle, Stage.drafting)
    await handle.execute_update(PostmortemWorkflow.submit_draft, draft(*items))
    await app.wait_stage(handle, Stage.in_review)
    await approve_all(handle)
    state = await app.wait_for(handle, lambda s: s.stage == Stage.following_up and len(s.items) == len(items)
                               and all(i.ticket_key for i in s.items))
    return handle, state
