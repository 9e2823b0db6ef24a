"""A message button's action, run as a person (`WebhookContext.act`): the chat tool's interactivity endpoint
(closeloop.integrations.slack.interactions) authenticates the press and maps the chat user to a directory key;
this runs the same Workflow Update as the CLI, through the one client:

| action | Update | on |
|---|---|---|
| `approve`, `request_changes` | `review` (ReviewVote) | the postmortem workflow |
| `item_done` | `complete` (CompleteItem) | the action item's workflow |
| `effective`, `ineffective` | `verdict` (VerdictInput) | the action item's workflow |
| `snooze` | `snooze` (SnoozeRequest, a day) | the postmortem's (its draft) or the item's workflow |

The Update's validator decides whether the person may (a reviewer, the owner...) and whether it is still to
do (a second press of the same button is refused: "already voted", "the item is not open"). A refusal is
`ActionRefused` with the validator's reason; a rejected Update leaves no event in the workflow's history."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from closeloop import contract
from closeloop.client import Closeloop, workflow_not_found
from closeloop.ids import BadId, parse_item_id, parse_postmortem_id, postmortem_of_item
from closeloop.integrations.base import ActionRefused
from closeloop.message_actions import CHANGING, parse_value
from closeloop.models import CompleteItem, ReviewDecision, ReviewVote, SnoozeRequest, VerdictInput
from closeloop.web.requests import Reject

log = structlog.get_logger("closeloop.web")

UPDATE_TIMEOUT = 20.0  # seconds: an Update not answered by then may still run; the person is told to look later


def target(action: str, value: str) -> tuple[str, str]:
    """(kind, workflow id) of a button: kind from CHANGING, the postmortem's workflow for a review, else the
    item's. ActionRefused when the action is unknown or the value names no postmortem / item of the kind."""
    kind = CHANGING.get(action)
    if kind is None:
        raise ActionRefused(f"closeloop has no action {action[:60]!r}")
    postmortem, item = parse_value(value)
    try:
        postmortem_id = parse_postmortem_id(postmortem)
        if kind == "review" or (kind == "snooze" and item is None):
            if item is not None:
                raise BadId("a review names a postmortem, not an action item")
            return kind, postmortem_id
        if item is None:
            raise BadId("this action needs an action item")
        item_id = parse_item_id(item if "/" in item else f"{postmortem_id}/{item}")
        if postmortem_of_item(item_id) != postmortem_id:
            raise BadId("the action item is not the postmortem's")
        return kind, item_id
    except BadId as e:
        raise ActionRefused(f"the button's value {value[:120]!r} is not what closeloop sends: {e}") from None


def _update_args(kind: str, action: str, person: str, note: str) -> tuple[contract.UpdateRef[Any, str], Any]:
    if kind == "review":
        return contract.REVIEW, ReviewVote(reviewer=person, decision=ReviewDecision(action), comment=note)
    if kind == "complete":
        return contract.COMPLETE_ITEM, CompleteItem(by=person, note=note)
    if kind == "snooze":  # the same Update name on either workflow
        return contract.SNOOZE_DRAFT, SnoozeRequest(by=person)
    return contract.VERDICT, VerdictInput(by=person, effective=action == "effective", note=note)


def _reason(e: WorkflowUpdateFailedError) -> str:
    cause = e.cause
    message = cause.message if isinstance(cause, ApplicationError) else str(cause or e)
    return " ".join(message.split())[:500] or "the workflow refused it"


async def act(client: Callable[[], Awaitable[Closeloop]], person: str, action: str, value: str, note: str = "",
              *, timeout: float = UPDATE_TIMEOUT) -> str:
    """Run the button's Update as `person`: its answer, or ActionRefused."""
    kind, workflow_id = target(action, value)
    ref, arg = _update_args(kind, action, person, note)
    try:
        closeloop = await client()
    except Reject:
        raise ActionRefused("closeloop cannot reach its workflow engine right now; try again in a minute",
                            retryable=True) from None
    try:
        async with asyncio.timeout(timeout):
            result = await closeloop.update(ref, workflow_id, arg)
    except WorkflowUpdateFailedError as e:  # the validator refused it (or the handler failed): nothing changed
        reason = _reason(e)
        log.info("action_refused", action=action, person=person, workflow_id=workflow_id, reason=reason)
        raise ActionRefused(reason) from None
    except RPCError as e:
        if workflow_not_found(e):
            raise ActionRefused("this postmortem or action item is no longer followed up (its lifecycle ended)") \
                from None
        log.warning("action_failed", action=action, person=person, workflow_id=workflow_id, error=e.status.name)
        raise ActionRefused("closeloop's workflow engine is unavailable; try again in a minute",
                            retryable=True) from None
    except TimeoutError:
        log.warning("action_slow", action=action, person=person, workflow_id=workflow_id)
        raise ActionRefused("closeloop is slow to answer: your press may still count; look again in a minute",
                            retryable=True) from None
    log.info("action_done", action=action, person=person, workflow_id=workflow_id)
    return result
