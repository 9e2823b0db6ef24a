"""What every activity shares: the integrations it acts through, retry policies and timeouts,
heartbeating, and logging bound to the workflow and activity ids."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from closeloop.integrations.base import IntegrationError
from closeloop.integrations.registry import Integrations

T = TypeVar("T")

_integrations: Integrations | None = None
_temporal: Temporal | None = None


@dataclass(frozen=True)
class Temporal:
    """The worker's own Temporal client, for the few activities that talk to other workflows (the ticket
    sweep signals action items). Activities run in the worker's thread pool and the client lives on the
    worker's event loop: `call` runs a coroutine there and waits for it."""

    client: Client
    loop: asyncio.AbstractEventLoop

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


def use(integrations: Integrations, client: Client | None = None) -> None:
    """Called once by the worker (and by tests) before activities run, on the worker's event loop when a
    client is given."""
    global _integrations, _temporal
    _integrations = integrations
    try:
        _temporal = Temporal(client, asyncio.get_running_loop()) if client is not None else None
    except RuntimeError:  # built outside an event loop: temporal() says so when an activity needs it
        _temporal = None


def deps() -> Integrations:
    if _integrations is None:
        raise RuntimeError("activities used before activities._shared.use(integrations) was called")
    return _integrations


def temporal() -> Temporal:
    if _temporal is None:
        raise RuntimeError("activities used the Temporal client before activities._shared.use(..., client) "
                           "was called")
    return _temporal


def log() -> Any:
    info = activity.info()
    return structlog.get_logger("closeloop.activity").bind(
        workflow_id=info.workflow_id, run_id=info.workflow_run_id, activity=info.activity_type,
        activity_id=info.activity_id, attempt=info.attempt,
    )


# Errors whose retry cannot help (bad data); everything else is retried with backoff.
NON_RETRYABLE = ["NonRetryable", "ValidationError", "TemplateProblem"]

# The timeouts also bound how long a task of a worker that died waits before another worker retries it.

# The store is ours and close by: retry fast, forever.
STORE = dict(
    start_to_close_timeout=timedelta(seconds=15),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=1), non_retryable_error_types=NON_RETRYABLE),
)

# Outside systems (notifier, tracker, calendar, publisher): an hour-long outage delays, fails nothing.
EXTERNAL = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=10), non_retryable_error_types=NON_RETRYABLE),
)

# Timeline sources are best effort: a few tries, then the timeline carries a note instead.
BEST_EFFORT = dict(
    start_to_close_timeout=timedelta(minutes=2),
    heartbeat_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                             maximum_interval=timedelta(seconds=30), maximum_attempts=3,
                             non_retryable_error_types=NON_RETRYABLE),
)


# Periodic sweeps: one pass over many items. The next scheduled run is the real retry, so a few tries only
# (with the Schedule's SKIP overlap policy a sweep retrying forever would hold back every later run).
SWEEP = dict(
    start_to_close_timeout=timedelta(minutes=10),
    heartbeat_timeout=timedelta(minutes=1),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=1), maximum_attempts=3,
                             non_retryable_error_types=NON_RETRYABLE),
)


@contextmanager
def external_errors(what: str) -> Iterator[None]:
    """Turn an integration's failure into what Temporal's retry policy understands: a non-retryable
    ApplicationError for errors no retry can fix, and for rate limits (429, 403 with Retry-After or a
    rate-limit reset) a retry no sooner than the server asked: the wait is the retry's, never a sleep here."""
    try:
        yield
    except IntegrationError as e:
        retry_after = getattr(e, "retry_after", None)
        raise ApplicationError(
            f"{what}: {e}", type="NonRetryable" if not e.retryable else type(e).__name__,
            non_retryable=not e.retryable,
            next_retry_delay=timedelta(seconds=retry_after) if e.retryable and retry_after else None,
        ) from e


def heartbeat(*details: Any) -> None:
    """Heartbeat when running inside an activity; a no-op elsewhere (direct calls in tests)."""
    if activity.in_activity():
        activity.heartbeat(*details)
