"""`closeloop notifications`: the outbox (every notification, to whom), and what each configured channel (email,
Slack, ...) did with it or would do."""

from __future__ import annotations

from typing import Any

import click

from closeloop.cli._common import CliError, Context, echo_json, fmt_time, open_store, pass_ctx, postmortem_id, table


@click.command("notifications")
@click.argument("postmortem", metavar="[ID]", required=False)
@click.option("--body", is_flag=True, help="Also print each message's body.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with bodies).")
@pass_ctx
def notifications(obj: Context, postmortem: str | None, body: bool, as_json: bool) -> None:
    """List the notification outbox, oldest first, with what each channel did.

    Every notification is in the outbox. Besides, it goes through the first of the recipient's channels (their
    own `channels` in the directory, else `[notify] channels`) that reaches them; the CHANNELS column says, for
    each of those channels in order: `sent`, `failed` (for good: the next one was tried), or `would send` /
    `next` when it has not been tried yet. With no channel configured (the embedded default) it says
    `outbox only`.

    ID (postmortem/api/INC-1, api/INC-1 or api:INC-1) limits it to one postmortem and its action items; an
    ID closeloop has no incident for is an error (exit 1), as for `closeloop status`.

    \b
    Examples:
      closeloop notifications api/INC-1
      closeloop notifications --json | jq '.[] | select(.kind == "escalation") | .channels'
    """
    wid = postmortem_id(postmortem) if postmortem else None
    config = obj.config()
    store = open_store(obj)
    try:
        if wid is not None and store.records.incident_id(*wid.split("/")[1:]) is None:
            # as `closeloop status` does: an unknown postmortem is "not found" (exit 1), not an empty list
            raise CliError(f"no postmortem {wid} (no incident {wid.removeprefix('postmortem/')} is recorded)")
        rows = store.local.notifications(wid)
        done = store.channel_deliveries.of([n.key for n in rows])
    finally:
        store.close()
    by_key: dict[str, dict[str, Any]] = {}
    for d in done:
        by_key.setdefault(d.key, {})[d.channel] = d
    people = config.people_directory()
    configured = [name for name in config.notifiers]

    def channels(n: Any) -> list[dict[str, Any]]:
        person = people.person(n.recipient)
        if n.kind in config.notify.kinds:
            order = config.notify.kinds[n.kind]
        else:
            order = person.channels if person is not None and person.channels is not None else config.notify.channels
        out: list[dict[str, Any]] = []
        taken = False
        for name in [c for c in dict.fromkeys(order) if c in configured]:
            d = by_key.get(n.key, {}).get(name)
            if d is not None:
                out.append({"channel": name, "status": d.status, "address": d.address, "message_id": d.message_id,
                            "error": d.error})
                taken = taken or d.status == "sent"
            else:
                out.append({"channel": name, "status": "not needed" if taken else "would send" if not out
                            else "next", "address": None, "message_id": None, "error": None})
        return out

    if as_json:
        echo_json([{"at": n.at, "sent_at": n.sent_at, "kind": n.kind, "recipient": n.recipient,
                    "subject": n.subject, "body": n.body, "key": n.key, "postmortem_id": n.postmortem_id,
                    "item_id": n.item_id, "channel": n.channel, "channels": channels(n)} for n in rows])
        return
    if not rows:
        click.echo("no notifications")
        return

    def summary(n: Any) -> str:
        found = channels(n)
        return ", ".join(f"{c['channel']}: {c['status']}" for c in found) or "outbox only"

    if body:
        for n in rows:
            click.echo(f"--- {fmt_time(n.at)}  {n.kind}  to {n.recipient}: {n.subject}  [{summary(n)}]\n"
                       f"{n.body.rstrip()}\n")
        return
    table([[fmt_time(n.at), n.kind, n.recipient, n.subject, summary(n)] for n in rows],
          ["AT", "KIND", "TO", "SUBJECT", "CHANNELS"])


@click.group("notify")
def notify() -> None:
    """Check how people are reached (email, Slack, chat).

    \b
    Examples:
      closeloop notify test alice
    """


@notify.command("test")
@click.argument("person")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def notify_test(obj: Context, person: str, as_json: bool) -> None:
    """Send PERSON a test message through each of their channels, and say what happened.

    PERSON is a key from the directory. Their channels are their own `channels`, else `[notify] channels`;
    every one is tried (not only the first that works), from this machine, with the worker's settings and
    secrets. Nothing is recorded in the outbox. Exit 0 when every channel took the message, 1 otherwise.

    \b
    Examples:
      closeloop notify test alice
      closeloop notify test alice --json
    """
    from datetime import UTC, datetime

    from closeloop.integrations.base import IntegrationError, Notification
    from closeloop.integrations.registry import channels as configured_channels
    from closeloop.links import links

    config = obj.config()
    who = config.people_directory().person(person)
    if who is None:
        raise CliError(f"no person {person!r} in the directory")
    built = configured_channels(config)
    order = who.channels if who.channels is not None else config.notify.channels
    now = datetime.now(UTC)
    message = Notification(
        key=f"notify-test/{person}/{now.isoformat()}", kind="test", recipient=person,
        subject="closeloop test message",
        body=(f"Hello {who.name},\n\nThis is a test message from closeloop, sent by `closeloop notify test`. "
              "This is where closeloop will tell you about postmortems, reminders and action items.\n"),
        at=now, postmortem_id="closeloop/test", links=links(config.web.public_url, "closeloop/test", None))
    results: list[dict[str, Any]] = []
    for name in dict.fromkeys(order):
        channel = built.get(name)
        if channel is None:
            results.append({"channel": name, "status": "not configured", "address": None, "detail": None})
            continue
        try:  # finding it may ask the provider (Slack), or find a handle naming no webhook (chat webhooks)
            address = channel.address(who)
        except IntegrationError as e:
            results.append({"channel": name, "status": "failed (a retry may work)" if e.retryable else "failed",
                            "address": None, "detail": str(e)})
            continue
        if not address:
            results.append({"channel": name, "status": "no address", "address": None,
                            "detail": f"{who.name} has no address on {name}"})
            continue
        try:
            detail = channel.deliver(message, who, address)
            status = "sent"
        except IntegrationError as e:
            status = "failed (a retry may work)" if e.retryable else "failed"
            detail = str(e)
        results.append({"channel": name, "status": status, "address": address, "detail": detail})
    if as_json:
        echo_json({"person": person, "channels": results})
    elif not results:
        click.echo(f"{person} has no channels (set [notify] channels or people.{person}.channels): notifications "
                   "reach the outbox only")
    else:
        for r in results:
            where = f" to {r['address']}" if r["address"] else ""
            click.echo(f"{r['channel']}: {r['status']}{where}" + (f": {r['detail']}" if r["detail"] else ""))
    if any(r["status"] != "sent" for r in results):
        click.get_current_context().exit(1)


COMMANDS = [notifications, notify]
