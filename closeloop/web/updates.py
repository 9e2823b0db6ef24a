"""One Workflow Update run on a person's behalf, by the web app's pages and the operator API alike: the
workflow's validator decides, and its refusal comes back in its own words. Temporal's errors never reach the
person as they are."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from closeloop.client import Closeloop, workflow_not_found

UPDATE_TIMEOUT = 20.0  # seconds: an Update not answered by then may still run; the person is told to look later


@dataclass(frozen=True)
class Outcome:
    done: bool
    message: str  # the workflow's answer, or why nothing was done
    status: int = 200  # for an HTTP answer: 200, 409 refused, 404 no such lifecycle, 503 try later


async def run_update(client: Callable[[], Awaitable[Closeloop]], ref: Any, workflow_id: str, arg: Any,
                     *, timeout: float = UPDATE_TIMEOUT) -> Outcome:
    closeloop = await client()
    try:
        async with asyncio.timeout(timeout):
            return Outcome(True, str(await closeloop.update(ref, workflow_id, arg)))
    except WorkflowUpdateFailedError as e:
        cause = e.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or e)
        return Outcome(False, " ".join(message.split())[:500] or "the workflow refused it", 409)
    except RPCError as e:
        if workflow_not_found(e):
            return Outcome(False, "no such lifecycle, or it has ended", 404)
        return Outcome(False, "closeloop's workflow engine is unavailable; try again in a minute", 503)
    except TimeoutError:
        return Outcome(False, "closeloop is slow to answer: the action may still count; look again in a minute", 503)
