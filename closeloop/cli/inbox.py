"""`closeloop inbox`: the incidents the web app accepted whose lifecycle has not started (pending: Temporal
was unreachable, or the forwarder is catching up) or never will (refused: Temporal refused it as invalid, with
its reason). A store view, like `closeloop tickets`: it reads the database, not Temporal."""

from __future__ import annotations

from typing import Any

import click

from closeloop.cli._common import Context, echo_json, fmt_time, open_store, table


def _entry_json(e: Any) -> dict[str, Any]:
    return {"incident": f"{e.incident.source}/{e.incident.external_id}", "workflow_id": e.incident.workflow_id,
            "state": e.state, "via": e.via, "received_at": e.received_at, "attempts": e.attempts,
            "last_error": e.last_error,
            "title": e.incident.title}


@click.command("inbox")
@click.option("--state", type=click.Choice(["pending", "refused"]), help="Only rows in this state.")
@click.option("--limit", type=click.IntRange(1, 10000), default=200, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def inbox(ctx: click.Context, state: str | None, limit: int, as_json: bool) -> None:
    """List the accepted incidents whose lifecycle is not started: pending (the web app's forwarder retries
    them) and refused (Temporal refused them as invalid; the reason is shown, they are not tried again).

    \b
    Examples:
      closeloop inbox
      closeloop inbox --state refused --json
    """
    obj = ctx.ensure_object(Context)
    store = open_store(obj)
    try:
        rows = [_entry_json(e) for e in store.inbox.entries((state,) if state else ("pending", "refused"), limit)]
        counts = store.inbox.counts()
    finally:
        store.close()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"nothing pending or refused ({counts.get('forwarded', 0)} forwarded)")
        return
    table([[r["incident"], r["state"], r["via"], fmt_time(r["received_at"]), str(r["attempts"]),
            (r["last_error"] or "-")[:120]] for r in rows],
          ["INCIDENT", "STATE", "VIA", "RECEIVED", "TRIES", "LAST ERROR"])


COMMANDS = [inbox]
