"""The one client of closeloop's workflows, for everything outside a worker: the CLI, the web app, the ticket
sweep and tests. It speaks only closeloop.contract (names, ids, typed handler references) and the models,
never a workflow class, so callers load no workflow, activity or store code.

    closeloop = await Closeloop.connect(config.temporal)
    started = await closeloop.start_postmortem(incident)
    await closeloop.update(contract.SUBMIT_DRAFT, started.workflow_id, draft)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio.client import Client, Interceptor, WorkflowExecution
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from closeloop import contract
from closeloop import search_attributes as sa
from closeloop.models import Incident, PostmortemInput, PostmortemState, SweepInput, SyncSummary, TicketStatusEvent

if TYPE_CHECKING:
    from temporalio.runtime import Runtime

    from closeloop.config import TemporalSettings

In = TypeVar("In")
Out = TypeVar("Out")

STALLED_QUERY = f'{sa.STALLED.name} = true AND ExecutionStatus = "Running"'


async def connect(settings: TemporalSettings, *, runtime: Runtime | None = None,
                  interceptors: Sequence[Interceptor] = ()) -> Client:
    """A Temporal client with closeloop's data converter (pydantic); `runtime` (its metrics exporter) and
    `interceptors` (tracing) from closeloop.telemetry."""
    return await Client.connect(settings.address, namespace=settings.namespace,
                                data_converter=pydantic_data_converter, runtime=runtime,
                                interceptors=list(interceptors))


@dataclass
class Started:
    workflow_id: str
    run_id: str | None
    new: bool  # False: this incident already has (or had) a lifecycle; nothing new was started


def initial_search_attributes(incident: Incident) -> TypedSearchAttributes:
    return TypedSearchAttributes([
        SearchAttributePair(sa.STAGE, "starting"),
        SearchAttributePair(sa.SEVERITY, sa.keyword(incident.severity)),
        SearchAttributePair(sa.SERVICE, sa.keyword_list(incident.services)),
        SearchAttributePair(sa.STALLED, False),
    ])


class Closeloop:
    """closeloop's workflows as seen from outside a worker."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.temporal = client
        self.task_queue = task_queue

    @classmethod
    async def connect(cls, settings: TemporalSettings) -> Closeloop:
        return cls(await connect(settings), settings.task_queue)

    # ------------------------------------------------------------------ lifecycles

    async def start_postmortem(self, incident: Incident, **extra: Any) -> Started:
        """Start the incident's lifecycle, once. The workflow id comes from the source and the incident id: a
        second trigger joins the running lifecycle, and one after it ended is refused, so one incident never
        gets two lifecycles."""
        workflow_id = incident.workflow_id
        try:
            handle = await self.temporal.start_workflow(
                contract.POSTMORTEM_WORKFLOW,
                PostmortemInput(incident=incident, **extra),
                id=workflow_id,
                task_queue=self.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=initial_search_attributes(incident),
            )
        except WorkflowAlreadyStartedError:
            return Started(workflow_id, None, new=False)
        # USE_EXISTING returns the running workflow's handle; the response says whether it was new.
        response = getattr(handle, "_start_workflow_response", None)
        new = bool(getattr(response, "started", True))
        return Started(workflow_id, handle.result_run_id, new=new)

    async def exists(self, workflow_id: str) -> bool:
        """Whether the workflow exists (running or ended). RPCError for anything but "not found"."""
        return await self.describe_raw(workflow_id) is not None

    async def describe_raw(self, workflow_id: str) -> Any:
        """The raw DescribeWorkflowExecution answer (None when there is no such workflow). The raw call: the
        SDK's describe() decodes every search attribute, and the time-skipping test server returns an unset
        datetime attribute it cannot decode."""
        from temporalio.api.common.v1 import WorkflowExecution as Execution
        from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest

        try:
            return await self.temporal.workflow_service.describe_workflow_execution(DescribeWorkflowExecutionRequest(
                namespace=self.temporal.namespace, execution=Execution(workflow_id=workflow_id)))
        except RPCError as e:
            if workflow_not_found(e):
                return None
            raise

    async def running(self, workflow_id: str) -> bool:
        """Whether the workflow (its latest run) is running; False when it ended or never existed."""
        described = await self.describe_raw(workflow_id)
        return described is not None and described.workflow_execution_info.status == 1  # RUNNING

    async def postmortem_state(self, workflow_id: str) -> PostmortemState | None:
        result: PostmortemState | None = await self.query(contract.POSTMORTEM_STATE, workflow_id)
        return result

    async def list(self, query: str, limit: int) -> AsyncIterator[WorkflowExecution]:
        async for wf in self.temporal.list_workflows(query, limit=limit):
            yield wf

    # ------------------------------------------------------------------ handlers, by their contract

    async def update(self, ref: contract.UpdateRef[In, Out], workflow_id: str, arg: In) -> Out:
        """Run a person's action (a Workflow Update); WorkflowUpdateFailedError carries the validator's reason."""
        handle = self.temporal.get_workflow_handle(workflow_id)
        result: Out = await handle.execute_update(ref.name, arg, result_type=ref.result)
        return result

    async def query(self, ref: contract.QueryRef[Out], workflow_id: str) -> Out:
        handle = self.temporal.get_workflow_handle(workflow_id)
        result: Out = await handle.query(ref.name, result_type=ref.result)
        return result

    async def signal(self, ref: contract.SignalRef[In], workflow_id: str, arg: In, *,
                     rpc_timeout: timedelta | None = None, missing_ok: bool = True) -> bool:
        """Deliver a signal; False when the workflow no longer runs (never started, or ended), or, with
        `missing_ok=False`, the RPCError (NOT_FOUND) that says which."""
        try:
            await self.temporal.get_workflow_handle(workflow_id).signal(ref.name, arg, rpc_timeout=rpc_timeout)
        except RPCError as e:
            if workflow_not_found(e) and missing_ok:
                return False
            raise
        return True

    async def signal_ticket_status(self, item_workflow_id: str, event: TicketStatusEvent, *,
                                   rpc_timeout: timedelta | None = None, missing_ok: bool = True) -> bool:
        """Tell an action item what its tracker says: the one road for webhooks, the sweep and `closeloop ticket`."""
        return await self.signal(contract.TICKET_STATUS, item_workflow_id, event, rpc_timeout=rpc_timeout,
                                 missing_ok=missing_ok)

    # ------------------------------------------------------------------ sweeps

    async def sync_tickets_now(self) -> SyncSummary:
        """Run one ticket reconciliation sweep now and wait for its summary. One manual sweep at a time: a second
        call while one runs waits for that one's summary."""
        handle = await self.temporal.start_workflow(
            contract.TICKET_SYNC_WORKFLOW, SweepInput(note="cli"), id=contract.TICKET_SYNC_MANUAL_ID,
            task_queue=self.task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            result_type=SyncSummary)
        summary: SyncSummary = await handle.result()
        return summary


def namespace_not_found(e: RPCError) -> bool:
    """Whether Temporal's NOT_FOUND is about the namespace (a wrong `--namespace`), not the workflow."""
    if e.status != RPCStatusCode.NOT_FOUND:
        return False
    try:
        details = list(e.grpc_status.details)
    except Exception:  # noqa: BLE001 - an undecodable status: go by the message
        details = []
    if any(d.type_url.endswith("NamespaceNotFoundFailure") for d in details):
        return True
    # Servers without the detail: Temporal words it "Namespace nope is not found." (a missing workflow's message
    # may name its namespace too, so only this exact shape counts)
    return re.fullmatch(r"namespace \S+ is not found\.?", e.message.strip().lower()) is not None


def workflow_not_found(e: RPCError) -> bool:
    """Whether Temporal's answer means "no such workflow" (and not "no such namespace")."""
    return e.status == RPCStatusCode.NOT_FOUND and not namespace_not_found(e)


async def start_postmortem(client: Client, task_queue: str, incident: Incident, **extra: Any) -> Started:
    """Closeloop(client, task_queue).start_postmortem(incident): for callers holding a bare Temporal client."""
    return await Closeloop(client, task_queue).start_postmortem(incident, **extra)
