"""Shared plumbing for the `closeloop` commands: the config, client and store a command needs, id shorthands,
parameter types, output helpers, and the one-line errors every failure becomes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

T = TypeVar("T")


# The exit codes of every command, defined once (listed in `closeloop --help` and the README).
EXIT_OK = 0
EXIT_FAILED = 1  # refused or not found: an unknown id, an update the workflow rejected, a failed step
EXIT_BAD_INPUT = 2  # a bad flag, file or config (click's usage errors too)
EXIT_UNAVAILABLE = 3  # a service closeloop needs does not answer: Temporal or the database
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_CODES_HELP = ("Exit codes: 0 ok; 1 refused or not found; 2 bad input or config; 3 Temporal or the database "
                   "unreachable; 130 interrupted.")


class CliError(click.ClickException):
    """A failure worded for the person at the terminal, with its exit code (EXIT_*)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        vars(self)["exit_code"] = exit_code  # click declares exit_code a class variable; this one is per error


def bad_input(message: str) -> CliError:
    return CliError(message, exit_code=EXIT_BAD_INPUT)


def unavailable(message: str) -> CliError:
    return CliError(message, exit_code=EXIT_UNAVAILABLE)


# --------------------------------------------------------------------------- context: config and client


@dataclass
class Context:
    config_path: str | None = None
    address: str | None = None
    namespace: str | None = None
    _config: Any = None

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        if self.address:
            env["CLOSELOOP_TEMPORAL_ADDRESS"] = self.address
        if self.namespace:
            env["CLOSELOOP_NAMESPACE"] = self.namespace
        env.update({k: v for k, v in extra.items() if v})
        return env

    def config(self, **env_extra: str) -> Any:
        """The validated Config (loaded on first use, so `--help` never needs one). ConfigError -> exit 2."""
        from closeloop.config import load_config

        if self._config is None or env_extra:
            cfg = load_config(self.config_path, env=self.env(**env_extra))
            if env_extra:
                return cfg
            self._config = cfg
        return self._config


pass_ctx = click.make_pass_decorator(Context, ensure=True)


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def unreachable(config: Any) -> CliError:
    return unavailable(f"cannot reach Temporal at {config.temporal.address}: start it with `closeloop dev`")


def reachable(address: str, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections at host:port. Checked before the Temporal client is even
    imported, so a command against a server that is down fails at once, with one line."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return True  # not host:port: let the client say what is wrong with it
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except OSError:
        return False


async def connect(config: Any) -> Any:
    """closeloop.client.Closeloop on the config's Temporal; an unreachable server is one line, exit 3."""
    if not reachable(config.temporal.address):
        raise unreachable(config)
    from closeloop.client import Closeloop

    try:
        return await Closeloop.connect(config.temporal)
    except (RuntimeError, ConnectionError, OSError):
        raise unreachable(config) from None


def open_store(obj: Context) -> Any:
    """The Store at the config's db_url, for the commands that work on it directly (the caller closes it)."""
    from closeloop.store.store import Store

    config = obj.config()
    return Store(config.db_url, **config.store.pool)


@contextmanager
def workflow_errors(kind: str, workflow_id: str) -> Iterator[None]:
    """Turn the Temporal errors of one workflow call into one line: unknown id, finished, rejected update."""
    from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateFailedError
    from temporalio.service import RPCError

    try:
        yield
    except WorkflowUpdateFailedError as e:
        raise CliError(f"rejected: {failure_message(e)}") from None
    except WorkflowQueryFailedError as e:
        raise CliError(f"query on {workflow_id} failed: {e.message}") from None
    except RPCError as e:
        from closeloop.client import workflow_not_found

        if workflow_not_found(e):  # a missing namespace is not a missing workflow: explain() words that
            if "complete" in e.message.lower():
                raise CliError(f"{kind} {workflow_id} has already finished ({e.message})") from None
            raise CliError(f"no {kind} {workflow_id}") from None
        raise


def failure_message(e: BaseException) -> str:
    """The innermost useful message of a Temporal failure (the validator's or handler's own words)."""
    cause: BaseException | None = e
    message = str(e)
    while cause is not None:
        text = getattr(cause, "message", None) or str(cause)
        if text:
            message = text
        cause = getattr(cause, "cause", None) or cause.__cause__
    return message.splitlines()[0] if message else "update failed"


# --------------------------------------------------------------------------- ids


def postmortem_id(text: str) -> str:
    """"postmortem/api/INC-1", "api/INC-1" or "api:INC-1" -> "postmortem/api/INC-1" (closeloop.contract)."""
    from closeloop.ids import BadId, parse_postmortem_id

    try:
        return parse_postmortem_id(text)
    except BadId as e:
        raise bad_input(str(e)) from None


def item_id(text: str) -> str:
    """"postmortem/api/INC-1/item-2", "api/INC-1/item-2" or "api:INC-1/item-2" -> the full item id."""
    from closeloop.ids import BadId, parse_item_id

    try:
        return parse_item_id(text)
    except BadId as e:
        raise bad_input(str(e)) from None


def incident_key(text: str) -> tuple[str, str]:
    """"api:INC-1", "api/INC-1" or "postmortem/api/INC-1" -> ("api", "INC-1")."""
    _, source, external_id = postmortem_id(text).split("/")
    return source, external_id


# --------------------------------------------------------------------------- parameter types


def parse_when(value: str) -> datetime:
    text = value.strip()
    if text.lower() == "now":
        return datetime.now(UTC)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time (e.g. 2025-03-01T14:05:00Z)") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class IsoTime(click.ParamType[datetime]):
    name = "ISO-TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_when(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


class DurationType(click.ParamType[timedelta]):
    name = "DURATION"

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        from pydantic import TypeAdapter, ValidationError

        from closeloop.durations import Duration

        if isinstance(value, timedelta):
            return value
        try:
            return TypeAdapter(Duration).validate_python(value)
        except (ValueError, ValidationError):
            self.fail(f"invalid duration {value!r}: use e.g. '90s', '30m', '4h', '2d', '1w' or '1d 12h'", param, ctx)


ISO_TIME = IsoTime()
DURATION = DurationType()


def read_text(path: str) -> str:
    """A text file ("-" for stdin); an unreadable file is a one-line error."""
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise bad_input(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise bad_input(f"cannot read {path}: not UTF-8 text") from None


def read_json(path: str, text: str | None = None) -> Any:
    """A JSON file ("-" for stdin), or its `text` already read; unreadable or malformed files are one-line
    errors."""
    if text is None:
        text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise bad_input(f"{path}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None


def validation_message(e: Any, what: str = "", fields: dict[str, str] | None = None) -> str:
    """One line from a pydantic ValidationError, naming the field (and its command-line flag)."""
    from closeloop.validation import first_problem

    err = e.errors()[0]
    flag = (fields or {}).get(str(err["loc"][0])) if err["loc"] else None
    problem = first_problem(e)
    if flag:
        problem = replace(problem, where=f"{problem.where} ({flag})")
    return problem.line(prefix=f"invalid {what}: " if what else "invalid input: ", more="more problem(s)")


# --------------------------------------------------------------------------- output


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=_json_default))


def fmt_time(dt: datetime | None) -> str:
    if dt is None:
        return "-"
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def fmt_span(td: timedelta) -> str:
    from closeloop.durations import format_duration

    seconds = abs(int(td.total_seconds()))
    if seconds >= 86400:
        seconds -= seconds % 3600  # days and hours are precise enough
    elif seconds >= 3600:
        seconds -= seconds % 60
    return format_duration(timedelta(seconds=seconds))


def fmt_relative(dt: datetime | None, now: datetime | None = None) -> str:
    if dt is None:
        return ""
    delta = dt - (now or datetime.now(UTC))
    if abs(delta) < timedelta(seconds=1):
        return "now"
    return f"in {fmt_span(delta)}" if delta > timedelta(0) else f"{fmt_span(delta)} ago"


def table(rows: list[list[str]], headers: list[str]) -> None:
    """A plain aligned table (no colours, so it pipes and greps well)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    click.echo(line(headers))
    for r in rows:
        click.echo(line(r))


def safe_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return url


def with_async(fn: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Run an async command body with asyncio.run."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return run(fn(*args, **kwargs))

    return wrapper
