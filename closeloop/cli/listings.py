"""Local helpers for the built-in integrations (they work on the store at the config's db_url): tickets,
the notification outbox, timeline notes, calendar busy blocks; plus `config check` and `db upgrade`."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import click

from closeloop.cli._common import (
    ISO_TIME,
    CliError,
    Context,
    bad_input,
    connect,
    echo_json,
    fmt_time,
    incident_key,
    item_id,
    pass_ctx,
    postmortem_id,
    run,
    safe_url,
    table,
    workflow_errors,
)

MARKER_PREFIX = "closeloop:"


def _store(obj: Context) -> Any:
    from closeloop.store.store import Store

    return Store(obj.config().db_url)


# --------------------------------------------------------------------------- tickets


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
    store = _store(obj)
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
                   + (f", {summary.workflows_gone} no longer running" if summary.workflows_gone else ""))
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
    store = _store(obj)
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
            event = TicketStatusEvent(ticket_key=key, status=signal_status,  # type: ignore[arg-type]
                                      at=datetime.now(timezone.utc), source="cli", reason=reason)
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


# --------------------------------------------------------------------------- outbox


@click.command("notifications")
@click.argument("postmortem", metavar="[ID]", required=False)
@click.option("--body", is_flag=True, help="Also print each message's body.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with bodies).")
@pass_ctx
def notifications(obj: Context, postmortem: str | None, body: bool, as_json: bool) -> None:
    """List the notification outbox (what the built-in notifier sent), oldest first.

    ID (postmortem/api/INC-1, api/INC-1 or api:INC-1) limits it to one postmortem and its action items.

    \b
    Examples:
      closeloop notifications api/INC-1
      closeloop notifications --json | jq '.[] | select(.kind == "escalation")'
    """
    wid = postmortem_id(postmortem) if postmortem else None
    store = _store(obj)
    try:
        rows = store.local.notifications(wid)
    finally:
        store.close()
    if as_json:
        echo_json([{"at": n.at, "sent_at": n.sent_at, "kind": n.kind, "recipient": n.recipient,
                    "subject": n.subject, "body": n.body, "key": n.key, "postmortem_id": n.postmortem_id,
                    "item_id": n.item_id, "channel": n.channel} for n in rows])
        return
    if not rows:
        click.echo("no notifications")
        return
    if body:
        for n in rows:
            click.echo(f"--- {fmt_time(n.at)}  {n.kind}  to {n.recipient}: {n.subject}\n{n.body.rstrip()}\n")
        return
    table([[fmt_time(n.at), n.kind, n.recipient, n.subject] for n in rows], ["AT", "KIND", "TO", "SUBJECT"])


# --------------------------------------------------------------------------- timeline and calendar


@click.group("timeline")
def timeline() -> None:
    """Add to an incident's timeline (collected when its postmortem reaches the timeline stage).

    \b
    Example:
      closeloop timeline note api:INC-1 --at 2025-03-01T13:12:00Z --text "Rolled back deploy 4711" --key-moment
    """


@timeline.command("note")
@click.argument("incident", metavar="INCIDENT_ID")
@click.option("--at", "at", type=ISO_TIME, default="now", show_default=True, help="When (ISO 8601).")
@click.option("--text", required=True, help="What happened.")
@click.option("--actor", help="Who did it (optional).")
@click.option("--key-moment", is_flag=True, help="Highlight it in the postmortem.")
@pass_ctx
def timeline_note(obj: Context, incident: str, at: datetime, text: str, actor: str | None, key_moment: bool) -> None:
    """Add a manual note to an incident's timeline. INCIDENT_ID is SOURCE:ID (api:INC-1).

    \b
    Example:
      closeloop timeline note api:INC-1 --at 2025-03-01T13:12:00Z --text "Rolled back deploy 4711" --key-moment
    """
    from pydantic import ValidationError

    from closeloop.cli._common import validation_message
    from closeloop.models import TimelineEvent

    source, external_id = incident_key(incident)
    if not text.strip():
        raise bad_input("--text must not be empty")
    try:
        event = TimelineEvent(at=at, source="notes", kind="note", text=text.strip(), actor=actor,
                              key_moment=key_moment)
    except ValidationError as e:
        raise bad_input(validation_message(e, "note")) from None
    store = _store(obj)
    try:
        inc = store.records.get_incident(source, external_id)
        if inc is None:
            raise CliError(f"no incident {source}:{external_id} recorded (resolve it first with "
                           "`closeloop incident resolve`)")
        added = store.records.add_timeline_events(inc, [event], notes=True)
    finally:
        store.close()
    click.echo(f"note added to {source}:{external_id} at {fmt_time(event.at)}" if added
               else f"the same note is already on {source}:{external_id}'s timeline")


@click.group("calendar")
def calendar() -> None:
    """Tell the built-in calendar when people are busy, so meetings avoid those times.

    \b
    Example:
      closeloop calendar busy alice --from 2025-03-03T09:00:00+01:00 --to 2025-03-03T17:00:00+01:00 --note "offsite"
    """


@calendar.command("busy")
@click.argument("person")
@click.option("--from", "start", type=ISO_TIME, required=True, help="Start (ISO 8601).")
@click.option("--to", "end", type=ISO_TIME, required=True, help="End (ISO 8601).")
@click.option("--note", default="", help="Optional note.")
@pass_ctx
def calendar_busy(obj: Context, person: str, start: datetime, end: datetime, note: str) -> None:
    """Add a busy block for PERSON in the local calendar.

    \b
    Example:
      closeloop calendar busy alice --from 2025-03-03T09:00:00Z --to 2025-03-03T17:00:00Z --note "offsite"
    """
    config = obj.config()
    if person not in config.people_directory():
        raise bad_input(f"unknown person {person!r} (known: {', '.join(sorted(config.people_directory())) or 'none'})")
    if end <= start:
        raise bad_input("--to must be after --from")
    store = _store(obj)
    try:
        store.local.add_busy_block(person, start, end, note)
    finally:
        store.close()
    click.echo(f"{person} is busy {fmt_time(start)} - {fmt_time(end)}")


# --------------------------------------------------------------------------- config and database


@click.group("config")
def config_group() -> None:
    """Inspect the configuration.

    \b
    Example:
      closeloop --config ./closeloop.toml config check
    """


@config_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def config_check(obj: Context, as_json: bool) -> None:
    """Validate the config file; print where it came from and what it holds (or the one problem).

    \b
    Example:
      closeloop --config ./closeloop.toml config check
    """
    from closeloop.integrations.registry import check

    config = obj.config()
    check(config)  # the integration plugins' sections too (ConfigError: one line, exit 2)
    info = {"source": config.source, "people": len(config.people_directory()), "services": len(config.services),
            "severities": sorted(config.severity), "temporal_address": config.temporal.address,
            "namespace": config.temporal.namespace, "task_queue": config.temporal.task_queue,
            "db_url": safe_url(config.db_url)}
    if as_json:
        echo_json(info)
        return
    click.echo(f"ok: {config.source}: {info['people']} people, {info['services']} services, "
               f"severity overrides: {', '.join(info['severities']) or 'none'}")
    click.echo(f"temporal {config.temporal.address} namespace {config.temporal.namespace} "
               f"task queue {config.temporal.task_queue}; store {info['db_url']}")


@click.group("db")
def db() -> None:
    """Manage closeloop's database.

    \b
    Example:
      closeloop db upgrade
    """


@db.command("upgrade")
@pass_ctx
def db_upgrade(obj: Context) -> None:
    """Run the database migrations (to the newest schema).

    \b
    Example:
      CLOSELOOP_DB_URL=postgresql+psycopg://closeloop@db/closeloop closeloop db upgrade
    """
    from closeloop.store.database import upgrade

    config = obj.config()
    try:
        upgrade(config.db_url)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy/Alembic errors: one line
        if isinstance(e, (CliError, click.ClickException)):
            raise
        raise CliError(f"migrating {safe_url(config.db_url)} failed: {str(e).splitlines()[0]}") from None
    click.echo(f"database {safe_url(config.db_url)} is at the newest schema")


COMMANDS = [tickets, ticket, notifications, timeline, calendar, config_group, db]
