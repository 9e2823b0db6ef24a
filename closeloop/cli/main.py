"""`closeloop`: run the dev stack or a worker, start postmortems, act on them, and look at what is going on.

Every failure is one line on stderr, with one exit code per kind of failure for every command (EXIT_* in
closeloop.cli._common): 1 refused or not found, 2 bad input or config, 3 Temporal or the database unreachable.
CLOSELOOP_DEBUG=1 shows tracebacks."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from closeloop.cli._common import (
    EXIT_BAD_INPUT,
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_UNAVAILABLE,
    Context,
)

EPILOG = """\b
Examples:
  closeloop dev                                   # Temporal dev server + worker, state in .closeloop/
  closeloop incident resolve --source api --id INC-1 --title "Checkout 500s" --service checkout
  closeloop status api/INC-1
  closeloop draft submit api/INC-1 --as alice --file draft.json
  closeloop review approve api/INC-1 --as bob
  closeloop stalled

""" + EXIT_CODES_HELP


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip()) or "error"


def _usage_hint(e: click.UsageError) -> str:
    path = e.ctx.command_path if e.ctx is not None else "closeloop"
    return f" (see `{path} --help`)"


def _rpc_message(e: Any) -> str:
    """Temporal's own words for an RPC error, for the person at the terminal (never for API clients)."""
    return _one_line(e.message)[:300] if e.message else "no details"


def explain(e: BaseException, address: str | None = None, namespace: str | None = None) -> tuple[str, int]:
    """(one-line message, exit code) for any failure a command can raise."""
    if isinstance(e, click.UsageError):
        return e.format_message() + _usage_hint(e), EXIT_BAD_INPUT
    if isinstance(e, click.ClickException):  # our own one-line errors: nothing more to load
        return e.format_message(), e.exit_code
    if isinstance(e, (KeyboardInterrupt, click.Abort)):
        return "interrupted", EXIT_INTERRUPTED
    from pydantic import ValidationError
    from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
    from temporalio.service import RPCError, RPCStatusCode

    from closeloop.cli._common import failure_message, validation_message
    from closeloop.config import ConfigError

    if isinstance(e, ConfigError):
        return str(e), EXIT_BAD_INPUT
    from closeloop.telemetry import PortInUse

    if isinstance(e, PortInUse):
        return str(e), EXIT_BAD_INPUT
    if isinstance(e, ValidationError):
        return validation_message(e, e.title), EXIT_BAD_INPUT
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})", EXIT_BAD_INPUT
    if isinstance(e, WorkflowUpdateFailedError):
        return f"rejected: {failure_message(e)}", EXIT_FAILED
    if isinstance(e, WorkflowFailureError):
        return f"workflow failed: {failure_message(e)}", EXIT_FAILED
    if isinstance(e, RPCError):
        from closeloop.client import namespace_not_found

        where = address or "the configured address"
        if namespace_not_found(e):
            return (f"the Temporal server at {where} has no namespace {namespace or ''!r} (--namespace, "
                    "$CLOSELOOP_NAMESPACE or [temporal] namespace)"), EXIT_BAD_INPUT
        if e.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return f"cannot reach Temporal at {where}: start it with `closeloop dev`", EXIT_UNAVAILABLE
        if e.status == RPCStatusCode.UNIMPLEMENTED:
            return f"the Temporal server at {where} does not support this call: {_rpc_message(e)}", EXIT_FAILED
        return f"Temporal error ({e.status.name if e.status else 'unknown'}): {_rpc_message(e)}", EXIT_FAILED
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(e, SQLAlchemyError):
        from closeloop.db_errors import db_reason, unreachable_database

        if unreachable_database(e):
            return f"cannot reach the database: {db_reason(e)}", EXIT_UNAVAILABLE
        return f"database error: {db_reason(e)}", EXIT_FAILED
    if isinstance(e, OSError):
        name = f"{e.filename}: " if getattr(e, "filename", None) else ""
        return f"{name}{e.strerror or e}", EXIT_FAILED
    return f"unexpected error: {type(e).__name__}: {e}", EXIT_FAILED


_current: dict[str, Context] = {}


def _address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--address must be HOST:PORT (exit 2 with one line), checked before anything connects."""
    if value is None:
        return None
    from closeloop.config import check_address

    try:
        return check_address(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None


class CloseloopGroup(click.Group):
    """A click group whose every failure ends as one line on stderr and an exit code, never a traceback."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name or "closeloop", complete_var, standalone_mode=False, **extra)
        except SystemExit:
            raise
        except BaseException as e:  # noqa: BLE001 - this is the one place that turns errors into lines
            if os.environ.get("CLOSELOOP_DEBUG") == "1" and not isinstance(e, click.ClickException):
                raise
            ctx_obj = _current.pop("ctx", None)
            temporal = ctx_obj._config.temporal if ctx_obj is not None and ctx_obj._config else None
            message, code = explain(e, temporal and temporal.address, temporal and temporal.namespace)
            try:
                click.echo(f"closeloop: {_one_line(message)}", err=True)
            except Exception:  # noqa: BLE001 - stderr gone (closed pipe): nothing left to tell
                pass
            sys.exit(code)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=CloseloopGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"],
                                                                   "max_content_width": 100})
@click.option("--config", "config_path", metavar="PATH", type=click.Path(dir_okay=False),
              help="Config file (TOML or YAML). Default: $CLOSELOOP_CONFIG, ./closeloop.toml, or the built-in "
                   "example config.")
@click.option("--address", metavar="HOST:PORT", callback=_address,
              help="Temporal frontend address (overrides the config and $CLOSELOOP_TEMPORAL_ADDRESS).")
@click.option("--namespace", metavar="NAME", help="Temporal namespace (overrides the config and "
                                                  "$CLOSELOOP_NAMESPACE).")
@click.version_option(package_name="closeloop", prog_name="closeloop")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, address: str | None, namespace: str | None) -> None:
    """Durable postmortem lifecycles on Temporal.

    Resolve an incident and closeloop schedules the postmortem meeting, collects the timeline, chases the
    draft and the reviews, publishes the document, opens a ticket per action item, chases those, and checks
    weeks later whether they worked.
    """
    ctx.obj = _current["ctx"] = Context(config_path=config_path, address=address, namespace=namespace)


def _register() -> None:
    from closeloop.cli import (
        actions,
        calendar,
        config_check,
        db,
        dev,
        inbox,
        incidents,
        notifications,
        reports,
        serve,
        standin,
        tickets,
        timeline,
    )

    for module in (dev, incidents, actions, tickets, notifications, reports, timeline, calendar, config_check, db,
                   serve, standin, inbox):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """The console entry point. Exits with os._exit after flushing: the Temporal SDK's native threads can
    crash the interpreter's finalization after a failed connect (SIGABRT instead of our exit code)."""
    try:
        cli.main(args=argv, prog_name="closeloop")
        code: int = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - closed pipe
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
