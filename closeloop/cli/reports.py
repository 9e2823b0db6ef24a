"""`closeloop report effectiveness`: the effectiveness review on demand, the same report the monthly Schedule
publishes and sends to `[reports] effectiveness_to`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from closeloop.cli._common import DURATION, ISO_TIME, Context, bad_input, open_store, pass_ctx


@click.group("report")
def report() -> None:
    """Reports for reliability leads, from closeloop's store.

    \b
    Example:
      closeloop report effectiveness --since 90d
    """


@report.command("effectiveness")
@click.option("--since", "since", type=DURATION, default="90d", show_default=True,
              help="How far back the period starts (a duration: 30d, 12w, ...).")
@click.option("--until", "until", type=ISO_TIME, default=None,
              help="The period's end, an ISO 8601 time (default: now).")
@click.option("--failing-after", type=click.IntRange(2, 1000), default=None,
              help="A service with at least this many incidents keeps failing (default: [reports] failing_after).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: the report's fields as JSON.")
@click.option("--html", "as_html", is_flag=True, help="The report as a self-contained HTML page.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of standard output.")
@pass_ctx
def effectiveness(obj: Context, since: timedelta, until: datetime | None, failing_after: int | None, as_json: bool,
                  as_html: bool, output: str | None) -> None:
    """Did the postmortem actions work? For the action items completed in the period: how many were verified
    effective, ineffective or unknown (and how many await their verdict), by service and by kind of item; the
    done items a later incident of their kind defeated; the items overdue now, by age; and the services with
    several incidents in the period.

    Markdown by default (the document the monthly review publishes), `--html` for the page, `--json` for the
    numbers. The monthly review (the `closeloop-effectiveness-review` Schedule, `[reports]`) covers the calendar
    month before it; here the period is SINCE before UNTIL.

    \b
    Examples:
      closeloop report effectiveness --since 90d
      closeloop report effectiveness --since 30d --json | jq '.failing_services'
      closeloop report effectiveness --since 12w --html -o review.html
    """
    from closeloop.rendering import render_effectiveness

    if as_json and as_html:
        raise bad_input("--json and --html: choose one")
    config = obj.config()
    end = (until or datetime.now(UTC)).astimezone(UTC)
    start = end - since
    threshold = failing_after or config.reports.failing_after
    store = open_store(obj)
    try:
        found = store.insights.effectiveness(start, end, failing_after=threshold)
    finally:
        store.close()
    if as_json:
        text = found.model_dump_json(indent=2) + "\n"
    else:
        overrides = config.data_dir / "templates"  # as the worker's (closeloop.integrations.registry)
        document = render_effectiveness(found, generated_at=datetime.now(UTC), failing_after=threshold,
                                        template_dir=overrides if overrides.is_dir() else None)
        text = document.html if as_html else document.markdown
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as e:
            raise bad_input(f"cannot write {output}: {e.strerror or e}") from None
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


COMMANDS = [report]
