"""Which database errors mean "the database is unavailable" (down, unreachable, refusing connections, timed
out), as opposed to a bug or bad data: the CLI answers those with exit 3, the web app with 503 and
Retry-After, the worker with one line. Pure: it only looks at the exception."""

from __future__ import annotations

from sqlalchemy import exc

_OUTAGES = (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, exc.TimeoutError)


def unreachable_database(e: BaseException) -> bool:
    """Whether `e` (or what it wraps) says the database cannot be reached or used right now."""
    if isinstance(e, _OUTAGES):
        return True
    return isinstance(e, exc.DBAPIError) and bool(e.connection_invalidated)


def db_reason(e: BaseException) -> str:
    """The driver's first line (without SQLAlchemy's "Background on this error" link), at most 300 characters:
    for the operator's terminal and the logs, never for API clients."""
    orig = getattr(e, "orig", None)
    lines = [line.strip() for line in str(orig if orig is not None else e).splitlines() if line.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]
