"""`closeloop timeline note`: add a manual note to an incident's timeline (collected into its postmortem)."""

from __future__ import annotations

from datetime import datetime

import click

from closeloop.cli._common import ISO_TIME, CliError, Context, bad_input, fmt_time, incident_key, open_store, pass_ctx


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
    store = open_store(obj)
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


COMMANDS = [timeline]
