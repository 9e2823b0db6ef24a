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

from closeloop.ids import ACTION_ITEM_WORKFLOW as ACTION_ITEM_WORKFLOW
from closeloop.ids import EFFECTIVENESS_REVIEW_WORKFLOW as EFFECTIVENESS_REVIEW_WORKFLOW
from closeloop.ids import POSTMORTEM_WORKFLOW as POSTMORTEM_WORKFLOW
from closeloop.ids import RETENTION_WORKFLOW as RETENTION_WORKFLOW
from closeloop.ids import STALLED_DIGEST_WORKFLOW as STALLED_DIGEST_WORKFLOW
from closeloop.ids import TICKET_SYNC_WORKFLOW as TICKET_SYNC_WORKFLOW
from closeloop.ids import BadId as BadId
from closeloop.ids import action_item_workflow_id as action_item_workflow_id
from closeloop.ids import incident_of as incident_of
from closeloop.ids import parse_item_id as parse_item_id
from closeloop.ids import parse_postmortem_id as parse_postmortem_id
from closeloop.ids import postmortem_of_item as postmortem_of_item
from closeloop.ids import postmortem_workflow_id as postmortem_workflow_id
from closeloop.models import (
    ActionItem,
    ActionItemState,
    Cancellation,
    CompleteItem,
    DraftSubmission,
    ExtensionRequest,
    PostmortemState,
    Reassignment,
    RetryRequest,
    ReviewVote,
    SnoozeRequest,
    TicketStatusEvent,
    VerdictInput,
    WontDoReason,
)

In = TypeVar("In")
Out = TypeVar("Out")

# --------------------------------------------------------------------------- workflow types

# POSTMORTEM_WORKFLOW, ACTION_ITEM_WORKFLOW, STALLED_DIGEST_WORKFLOW, TICKET_SYNC_WORKFLOW, RETENTION_WORKFLOW,
# EFFECTIVENESS_REVIEW_WORKFLOW: closeloop.ids.

# Workflow ids of the sweeps: the Schedules' own, and the one `closeloop tickets sync` runs by hand.
STALLED_DIGEST_SCHEDULE_ID = "closeloop-stalled-digest"
TICKET_SYNC_SCHEDULE_ID = "closeloop-ticket-sync"
TICKET_SYNC_MANUAL_ID = "closeloop-ticket-sync/cli"
RETENTION_SCHEDULE_ID = "closeloop-retention"
EFFECTIVENESS_REVIEW_SCHEDULE_ID = "closeloop-effectiveness-review"

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
SNOOZE_DRAFT = UpdateRef("snooze", SnoozeRequest, str)
ITEM_UPDATED = SignalRef("item_updated", ActionItem)
RETRY = SignalRef("retry", RetryRequest)  # an operator: try the failed step again
POSTMORTEM_STATE: QueryRef[PostmortemState | None] = QueryRef("state", PostmortemState | None)

# ActionItemWorkflow
COMPLETE_ITEM = UpdateRef("complete", CompleteItem, str)
SNOOZE_ITEM = UpdateRef("snooze", SnoozeRequest, str)
EXPLAIN_WONT_DO = UpdateRef("explain_wont_do", WontDoReason, str)
VERDICT = UpdateRef("verdict", VerdictInput, str)
TICKET_STATUS = SignalRef("ticket_status", TicketStatusEvent)
ITEM_STATE: QueryRef[ActionItemState] = QueryRef("state", ActionItemState)

# --------------------------------------------------------------------------- ids

# postmortem_workflow_id, action_item_workflow_id, parse_postmortem_id, parse_item_id, incident_of,
# postmortem_of_item and BadId: closeloop.ids (pure, cheap to import), re-exported here.


def item_workflow_id(item: ActionItem) -> str:
    """The ActionItemWorkflow that owns this item (item ids are `<postmortem id>/item-N`)."""
    return action_item_workflow_id(item.postmortem_id, item.id.removeprefix(item.postmortem_id + "/"))
