"""What every activity shares: logging bound to the workflow and activity ids, heartbeating, and turning
an integration's failure into what Temporal's retry policy understands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from closeloop.integrations.base import IntegrationError

MAX_FAILURE_MESSAGE = 500  # characters: a failure travels in the history (Temporal limits its size)


def log() -> Any:
    """The activity's logger, bound to its workflow and activity ids; a plain one outside an activity."""
    if not activity.in_activity():
        return structlog.get_logger("closeloop.activity")
    info = activity.info()
    return structlog.get_logger("closeloop.activity").bind(
        workflow_id=info.workflow_id, run_id=info.workflow_run_id, activity=info.activity_type,
        activity_id=info.activity_id, attempt=info.attempt,
    )


def non_retryable(message: str) -> ApplicationError:
    """A failure no retry can fix (bad data, a missing setting): the activity fails at once."""
    return ApplicationError(message, type="NonRetryable", non_retryable=True)


def _unique_violation(e: sa_exc.IntegrityError) -> bool:
    """A duplicate key: two writers raced, and the retry finds the row the other one wrote."""
    code = getattr(e.orig, "sqlstate", None) or getattr(e.orig, "pgcode", None)
    return code == "23505" or "UNIQUE constraint failed" in str(e.orig)


def bounded(text: str, limit: int = MAX_FAILURE_MESSAGE) -> str:
    """The first line of a message, at most `limit` characters (SQLAlchemy appends the SQL and its parameters)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[:limit - 3] + "..."


def classify(e: BaseException) -> ApplicationError | None:
    """A non-retryable ApplicationError for a failure no retry can fix, else None (retried with backoff):
    a value the database refuses (DataError; a constraint other than a duplicate key; a driver's ValueError,
    e.g. "embedded null byte"), data that does not validate, a TypeError or ValueError of our own code."""
    if isinstance(e, ApplicationError):
        return None  # classified where it was raised
    if isinstance(e, sa_exc.DataError) or (isinstance(e, sa_exc.IntegrityError) and not _unique_violation(e)):
        reason = f"the database refused a value: {bounded(str(e.orig))}"
    elif isinstance(e, sa_exc.StatementError) and isinstance(e.orig, ValueError | TypeError | UnicodeError):
        reason = f"the database driver refused a value: {bounded(str(e.orig))}"
    elif isinstance(e, sa_exc.SQLAlchemyError):
        return None  # connection lost, deadlock, timeout: transient
    elif isinstance(e, ValidationError | ValueError | TypeError | UnicodeError):
        reason = f"{type(e).__name__}: {bounded(str(e))}"
    else:
        return None
    return ApplicationError(reason, type="NonRetryable", non_retryable=True)


class ClassifyErrors(Interceptor):
    """The worker's activity interceptor: every activity's failure goes through `classify`, so a failure no retry
    can fix fails the activity at once (the workflow then stalls the lifecycle and tells people), instead of
    being retried forever."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ClassifyInbound(next)


class _ClassifyInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except Exception as e:
            failure = classify(e)
            if failure is None:
                raise
            log().error("activity failed; no retry can fix it", error=failure.message, kind=type(e).__name__)
            raise failure from None


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
            bounded_message(f"{what}: ", e), type="NonRetryable" if not e.retryable else type(e).__name__,
            non_retryable=not e.retryable,
            next_retry_delay=timedelta(seconds=retry_after) if e.retryable and retry_after else None,
        ) from None  # the chain is in the message, bounded: a raw chain can exceed Temporal's failure size limit


MAX_FAILURE_MESSAGE = 2000  # characters; Temporal refuses a whole failure past its size limit
MAX_CHAIN = 5  # causes told in the message; the rest are counted


def bounded_message(prefix: str, e: BaseException, limit: int = MAX_FAILURE_MESSAGE) -> str:
    """`prefix` + `str(e)` and its causes ("... <- caused by Type: message"), each cause shortened, the whole at
    most `limit` characters: the message of an ApplicationError raised `from None`, so that a long chain never
    becomes a failure Temporal refuses ("Failure exceeds size limit") and nobody sees why the activity failed."""
    parts: list[str] = []
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        parts.append(f"{type(cause).__name__}: {cause}" if parts else str(cause) or type(cause).__name__)
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    told = [_shorten(p, limit // (MAX_CHAIN + 1)) for p in parts[:MAX_CHAIN]]
    more = f" (and {len(parts) - MAX_CHAIN} more causes)" if len(parts) > MAX_CHAIN else ""
    return _shorten(prefix + " <- caused by ".join(told) + more, limit)


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())  # one line
    return text if len(text) <= limit else text[: max(limit - 25, 0)] + f"... ({len(text)} characters)"


def heartbeat(*details: Any) -> None:
    """Heartbeat when running inside an activity; a no-op elsewhere (direct calls in tests)."""
    if activity.in_activity():
        activity.heartbeat(*details)
