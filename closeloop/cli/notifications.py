"""`closeloop notifications`: the built-in notifier's outbox (what was sent, to whom)."""

from __future__ import annotations

import click

from closeloop.cli._common import CliError, Context, echo_json, fmt_time, open_store, pass_ctx, postmortem_id, table


@click.command("notifications")
@click.argument("postmortem", metavar="[ID]", required=False)
@click.option("--body", is_flag=True, help="Also print each message's body.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with bodies).")
@pass_ctx
def notifications(obj: Context, postmortem: str | None, body: bool, as_json: bool) -> None:
    """List the notification outbox (what the built-in notifier sent), oldest first.

    ID (postmortem/api/INC-1, api/INC-1 or api:INC-1) limits it to one postmortem and its action items; an
    ID closeloop has no incident for is an error (exit 1), as for `closeloop status`.

    \b
    Examples:
      closeloop notifications api/INC-1
      closeloop notifications --json | jq '.[] | select(.kind == "escalation")'
    """
    wid = postmortem_id(postmortem) if postmortem else None
    store = open_store(obj)
    try:
        if wid is not None and store.records.incident_id(*wid.split("/")[1:]) is None:
            # as `closeloop status` does: an unknown postmortem is "not found" (exit 1), not an empty list
            raise CliError(f"no postmortem {wid} (no incident {wid.removeprefix('postmortem/')} is recorded)")
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


COMMANDS = [notifications]
