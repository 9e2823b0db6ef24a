"""`closeloop tickets` (the built-in local tracker's tickets; `tickets sync` reconciles every tracker now) and
`closeloop ticket close|reopen` (change a local ticket; its action item hears about it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from closeloop.cli._common import (
    CliError,
    Context,
    connect,
    echo_json,
    fmt_time,
    item_id,
    open_store,
    pass_ctx,
    run,
    table,
    workflow_errors,
)

MARKER_PREFIX = "closeloop:"


def _ticket_json(t: Any) -> dict[str, Any]:
    return {
        "key": t.key, "status": t.status, "resolution": t.resolution, "title": t.title, "assignee": t.assignee,
        "priority": t.priority, "due_at": t.due_at, "created_at": t.created_at, "updated_at": t.updated_at,
        "item_id": t.marker.removeprefix(MARKER_PREFIX) if t.marker.startswith(MARKER_PREFIX) else None,
        "marker": t.marker,
    }


@click.group("tickets", invoke_without_command=True)
@click.option("--status", type=click.Choice(["open", "done", "wont_do"]), help="Only tickets in this status.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def tickets(ctx: click.Context, status: str | None, as_json: bool) -> None:
    """List the tickets of the built-in local tracker (`closeloop tickets sync`: reconcile every tracker now).

    \b
    Examples:
      closeloop tickets
      closeloop tickets --status open --json
      closeloop tickets sync
    """
    if ctx.invoked_subcommand is not None:
        return
    obj = ctx.ensure_object(Context)
    store = open_store(obj)
    try:
        rows = [_ticket_json(t) for t in store.local.tickets() if status is None or t.status == status]
    finally:
        store.close()
    if as_json:
        echo_json(rows)
    elif not rows:
        click.echo("no tickets")
    else:
        table([[r["key"], r["status"], r["priority"], r["assignee"], fmt_time(r["due_at"]), r["title"],
                r["item_id"] or "-"] for r in rows],
              ["KEY", "STATUS", "PRIO", "ASSIGNEE", "DUE", "TITLE", "ITEM"])


@tickets.command("sync")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (the sweep's summary).")
@pass_ctx
def tickets_sync(obj: Context, as_json: bool) -> None:
    """Reconcile every tracked action item with its ticket now, and print what was signalled.

    Runs the sweep the `closeloop-ticket-sync` Schedule runs every `[sync] every` (a TicketSyncWorkflow on
    the worker): each tracker is asked once about all its tickets, and an item whose ticket was closed,
    closed as won't do, reopened, deleted or moved hears about it. Exit 1 when a tracker failed (the others
    are still reconciled).

    \b
    Examples:
      closeloop tickets sync
      closeloop tickets sync --json | jq .signalled
    """
    config = obj.config()

    async def go() -> Any:
        closeloop = await connect(config)
        return await closeloop.sync_tickets_now()

    summary = run(go())
    if as_json:
        echo_json(summary.model_dump(mode="json"))
    else:
        kinds = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in summary.signalled.items() if n) or "nothing"
        calls = f", {summary.calls} tracker calls" if summary.calls is not None else ""
        click.echo(f"checked {summary.items_checked} items{calls}: signalled {kinds}; {summary.unchanged} unchanged"
                   + (f", {summary.already_signalled} signalled before" if summary.already_signalled else "")
                   + (f", {summary.workflows_gone} no longer running" if summary.workflows_gone else "")
                   + (f", {summary.cancelled} cancelled (lifecycle ended)" if summary.cancelled else ""))
        for t in summary.trackers:
            click.echo(f"  {t.tracker}: {t.items} items" + (f", {t.calls} calls" if t.calls is not None else "")
                       + (f", FAILED: {t.error}" if t.error else ""))
    if summary.failures:
        raise CliError(f"{len(summary.failures)} tracker(s) failed: {'; '.join(summary.failures)}")


@click.group("ticket")
def ticket() -> None:
    """Change a local tracker ticket; the action item's workflow hears about it (status sync).

    \b
    Examples:
      closeloop ticket close LOCAL-1
      closeloop ticket close LOCAL-2 --wont-do --reason "superseded by LOCAL-5"
      closeloop ticket reopen LOCAL-1
    """


def _set_ticket(obj: Context, key: str, status: str, signal_status: str, reason: str) -> None:
    from closeloop.models import TicketStatusEvent

    config = obj.config()
    store = open_store(obj)
    try:
        row = next(iter(store.local.tickets([key])), None)
        if row is None and "/item-" in key:  # an action item id: its ticket, whatever its key
            row = store.local.ticket_by_marker(MARKER_PREFIX + item_id(key))
        if row is None:
            raise CliError(f"no ticket {key} (see `closeloop tickets`)")
        key = row.key
        wid = row.marker.removeprefix(MARKER_PREFIX) if row.marker.startswith(MARKER_PREFIX) else None

        async def go() -> str:
            closeloop = await connect(config)  # reach Temporal before changing anything
            store.local.set_ticket_status(key, status, reason)
            if wid is None:
                return f"{key} is now {status} (not a closeloop action item: nothing to sync)"
            event = TicketStatusEvent(ticket_key=key, status=signal_status,
                                      at=datetime.now(UTC), source="cli", reason=reason)
            try:
                with workflow_errors("action item", wid):
                    await closeloop.signal_ticket_status(wid, event, missing_ok=False)
            except CliError as e:
                return f"{key} is now {status}; action item not updated: {e.message}"
            return f"{key} is now {status}; told {wid}"

        click.echo(run(go()))
    finally:
        store.close()


@ticket.command("close")
@click.argument("key", metavar="KEY|ITEM_ID")
@click.option("--wont-do", is_flag=True, help="Closed without doing it (the item ends as won't do).")
@click.option("--reason", default="", help="Resolution note.")
@pass_ctx
def ticket_close(obj: Context, key: str, wont_do: bool, reason: str) -> None:
    """Close a local ticket as done (or won't do) and tell its action item.

    \b
    Examples:
      closeloop ticket close LOCAL-1
      closeloop ticket close api/INC-1/item-2          # the ticket of that action item
      closeloop ticket close LOCAL-2 --wont-do --reason "superseded by LOCAL-5"
    """
    status = "wont_do" if wont_do else "done"
    _set_ticket(obj, key, status, status, reason)


@ticket.command("reopen")
@click.argument("key", metavar="KEY|ITEM_ID")
@click.option("--reason", default="", help="Why it is open again.")
@pass_ctx
def ticket_reopen(obj: Context, key: str, reason: str) -> None:
    """Reopen a local ticket; a done action item goes back to tracking.

    \b
    Example:
      closeloop ticket reopen LOCAL-1 --reason "the fix was rolled back"
    """
    _set_ticket(obj, key, "open", "reopened", reason)


COMMANDS = [tickets, ticket]
