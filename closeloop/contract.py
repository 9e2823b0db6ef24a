"""The contract of everything that crosses the Temporal boundary: workflow type names, workflow ids (both
ways), and the signal, update and query names as typed references with their input and result models.

The workflows declare their handlers with these names (`@workflow.update(name=SUBMIT_DRAFT.name)`), and
closeloop.client calls them by the same references, so a caller never imports a workflow class and a name
can never drift between the two sides. Every name here is recorded in running workflows' histories: change
none of them (tests/workflows/test_replay.py replays the recorded histories on every CI run).

Pure data and pure functions: workflows import this module inside their sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from closeloop.models import (  # noqa: F401 - the id functions are re-exported
    ActionItem,
    ActionItemState,
    Cancellation,
    CompleteItem,
    DraftSubmission,
    ExtensionRequest,
    PostmortemState,
    Reassignment,
    ReviewVote,
    TicketStatusEvent,
    VerdictInput,
    WontDoReason,
    action_item_workflow_id,
    postmortem_workflow_id,
)

In = TypeVar("In")
Out = TypeVar("Out")

# --------------------------------------------------------------------------- workflow types

POSTMORTEM_WORKFLOW = "PostmortemWorkflow"
ACTION_ITEM_WORKFLOW = "ActionItemWorkflow"
STALLED_DIGEST_WORKFLOW = "StalledDigestWorkflow"
TICKET_SYNC_WORKFLOW = "TicketSyncWorkflow"

# Workflow ids of the sweeps: the Schedules' own, and the one `closeloop tickets sync` runs by hand.
STALLED_DIGEST_SCHEDULE_ID = "closeloop-stalled-digest"
TICKET_SYNC_SCHEDULE_ID = "closeloop-ticket-sync"
TICKET_SYNC_MANUAL_ID = "closeloop-ticket-sync/cli"

# --------------------------------------------------------------------------- handlers, typed


@dataclass(frozen=True)
class UpdateRef(Generic[In, Out]):
    """A Workflow Update: a person's action, accepted or rejected by the workflow's validator."""

    name: str
    arg: type[In]
    result: type[Out]


@dataclass(frozen=True)
class SignalRef(Generic[In]):
    """A Signal: an event the workflow applies when it arrives (tracker sync, a child's progress)."""

    name: str
    arg: type[In]


@dataclass(frozen=True)
class QueryRef(Generic[Out]):
    """A Query: read the workflow's state. `result` is the type hint the answer is decoded as."""

    name: str
    result: Any


# PostmortemWorkflow
SUBMIT_DRAFT = UpdateRef("submit_draft", DraftSubmission, str)
REQUEST_EXTENSION = UpdateRef("request_extension", ExtensionRequest, str)
REASSIGN_OWNER = UpdateRef("reassign_owner", Reassignment, str)
REVIEW = UpdateRef("review", ReviewVote, str)
CANCEL = UpdateRef("cancel", Cancellation, str)
ITEM_UPDATED = SignalRef("item_updated", ActionItem)
POSTMORTEM_STATE: QueryRef[PostmortemState | None] = QueryRef("state", PostmortemState | None)

# ActionItemWorkflow
COMPLETE_ITEM = UpdateRef("complete", CompleteItem, str)
EXPLAIN_WONT_DO = UpdateRef("explain_wont_do", WontDoReason, str)
VERDICT = UpdateRef("verdict", VerdictInput, str)
TICKET_STATUS = SignalRef("ticket_status", TicketStatusEvent)
ITEM_STATE = QueryRef("state", ActionItemState)

# --------------------------------------------------------------------------- ids

POSTMORTEM_PREFIX = "postmortem/"
ITEM_PREFIX = "item-"


class BadId(ValueError):
    """A string that is no postmortem or action item id; the message says what one looks like."""


# postmortem_workflow_id(source, external id): the one workflow id of an incident's lifecycle (also
# Incident.workflow_id), so a second trigger never starts a second one. action_item_workflow_id(postmortem id,
# "item-N"): an action item's workflow id, which is also its ActionItem.id. Both are defined with the models
# (Incident.workflow_id needs the first) and are part of this contract.


def item_workflow_id(item: ActionItem) -> str:
    """The ActionItemWorkflow that owns this item (item ids are `<postmortem id>/item-N`)."""
    return action_item_workflow_id(item.postmortem_id, item.id.removeprefix(item.postmortem_id + "/"))


def parse_postmortem_id(text: str) -> str:
    """"postmortem/api/INC-1", "api/INC-1" or "api:INC-1" -> "postmortem/api/INC-1"; BadId otherwise."""
    text = text.strip()
    if text.startswith(POSTMORTEM_PREFIX):
        rest = text[len(POSTMORTEM_PREFIX):]
    else:
        rest = text.replace(":", "/", 1) if ":" in text and "/" not in text else text
    parts = rest.split("/")
    if len(parts) != 2 or not all(parts):
        raise BadId(f"bad postmortem id {text!r}: use postmortem/SOURCE/ID, SOURCE/ID or SOURCE:ID (e.g. api/INC-1)")
    return postmortem_workflow_id(parts[0], parts[1])


def parse_item_id(text: str) -> str:
    """"postmortem/api/INC-1/item-2", "api/INC-1/item-2" or "api:INC-1/item-2" -> the full item id."""
    text = text.strip()
    head, sep, item = text.rpartition("/")
    problem = (f"bad action item id {text!r}: use postmortem/SOURCE/ID/item-N or SOURCE/ID/item-N "
               "(e.g. api/INC-1/item-2)")
    if not sep or not item.startswith(ITEM_PREFIX) or not head:
        raise BadId(problem)
    try:
        return action_item_workflow_id(parse_postmortem_id(head), item)
    except BadId:
        raise BadId(problem) from None


def incident_of(postmortem_id: str) -> tuple[str, str]:
    """(source, external id) of a postmortem id in any of the forms parse_postmortem_id takes."""
    _, source, external_id = parse_postmortem_id(postmortem_id).split("/")
    return source, external_id


def postmortem_of_item(item_id: str) -> str:
    """The postmortem id an action item id belongs to."""
    return parse_item_id(item_id).rpartition("/")[0]
