"""`closeloop calendar busy`: busy blocks in the built-in calendar, so meetings avoid those times."""

from __future__ import annotations

from datetime import datetime

import click

from closeloop.cli._common import ISO_TIME, Context, bad_input, fmt_time, open_store, pass_ctx


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
    people = config.people_directory()
    if person not in people:
        raise bad_input(f"unknown person {person!r} (known: {', '.join(sorted(people)) or 'none'})")
    if end <= start:
        raise bad_input("--to must be after --from")
    store = open_store(obj)
    try:
        store.local.add_busy_block(person, start, end, note)
    finally:
        store.close()
    click.echo(f"{person} is busy {fmt_time(start)} - {fmt_time(end)}")


COMMANDS = [calendar]
