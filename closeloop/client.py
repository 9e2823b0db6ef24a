"""Talking to Temporal from outside a worker: connect, start a lifecycle, find and act on workflows.
Used by the CLI, the web app and tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import WorkflowAlreadyStartedError

from closeloop import search_attributes as sa
from closeloop.config import Config
from closeloop.models import Incident, PostmortemInput
from closeloop.workflows.postmortem import PostmortemWorkflow


async def connect(config: Config) -> Client:
    return await Client.connect(config.temporal.address, namespace=config.temporal.namespace,
                                data_converter=pydantic_data_converter)


@dataclass
class Started:
    workflow_id: str
    run_id: str | None
    new: bool  # False: this incident already has (or had) a lifecycle; nothing new was started


async def start_postmortem(client: Client, task_queue: str, incident: Incident, **extra: Any) -> Started:
    """Start the incident's lifecycle, once. The workflow id comes from the source and the incident id: a
    second trigger joins the running lifecycle, and one after it ended is refused, so one incident never
    gets two lifecycles."""
    workflow_id = incident.workflow_id
    try:
        handle = await client.start_workflow(
            PostmortemWorkflow.run,
            PostmortemInput(incident=incident, **extra),
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=sa_initial(incident),
        )
    except WorkflowAlreadyStartedError:
        return Started(workflow_id, None, new=False)
    # USE_EXISTING returns the running workflow's handle; the response says whether it was new.
    response = getattr(handle, "_start_workflow_response", None)
    new = bool(getattr(response, "started", True))
    return Started(workflow_id, handle.result_run_id, new=new)


def sa_initial(incident: Incident) -> TypedSearchAttributes:
    return TypedSearchAttributes([
        SearchAttributePair(sa.STAGE, "starting"),
        SearchAttributePair(sa.SEVERITY, incident.severity),
        SearchAttributePair(sa.SERVICE, incident.services),
        SearchAttributePair(sa.STALLED, False),
    ])


def postmortem_handle(client: Client, workflow_id: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(workflow_id)


STALLED_QUERY = f'{sa.STALLED.name} = true AND ExecutionStatus = "Running"'
