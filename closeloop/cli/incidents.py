"""`closeloop incident resolve`, `closeloop status` and `closeloop stalled`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from closeloop.cli._common import (
    ISO_TIME,
    CliError,
    Context,
    bad_input,
    connect,
    echo_json,
    fmt_relative,
    fmt_span,
    fmt_time,
    pass_ctx,
    postmortem_id,
    read_json,
    run,
    table,
    validation_message,
    workflow_errors,
)

# Incident fields and the flags that set them, so a validation error names what to fix.
INCIDENT_FLAGS = {
    "source": "--source", "external_id": "--id", "title": "--title", "severity": "--severity",
    "services": "--service", "commander": "--commander", "participants": "--participant",
    "started_at": "--started-at", "detected_at": "--detected-at", "mitigated_at": "--mitigated-at",
    "resolved_at": "--resolved-at", "links": "--link", "dedup_key": "--dedup-key",
}


@click.group("incident")
def incident() -> None:
    """Tell closeloop about incidents.

    \b
    Example:
      closeloop incident resolve --source api --id INC-1 --title "Checkout 500s" --severity SEV2 \\
          --service checkout --commander alice --participant bob
    """


def _link(value: str) -> dict[str, str]:
    title, sep, url = value.partition("=")
    if not sep:
        return {"title": value, "url": value}
    if not title.strip() or not url.strip():
        raise bad_input(f"bad --link {value!r}: use TITLE=URL")
    return {"title": title.strip(), "url": url.strip()}


@incident.command("resolve")
@click.option("--file", "file_", metavar="PATH", help="Incident JSON (the closeloop Incident model; '-' for "
                                                      "stdin). Flags given as well override its fields.")
@click.option("--source", help="Where the incident comes from: pagerduty, incidentio, api, cli, ... "
                               "[default: cli]")
@click.option("--id", "external_id", metavar="ID", help="The incident's id at the source, e.g. INC-1.")
@click.option("--title", help="What happened, in one line.")
@click.option("--severity", help="e.g. SEV1..SEV4 [default: SEV3]")
@click.option("--service", "services", multiple=True, help="Affected service (repeatable); the first picks "
                                                            "the policy and owner.")
@click.option("--commander", help="Incident commander (a person key from the config).")
@click.option("--participant", "participants", multiple=True, help="Responder (repeatable).")
@click.option("--started-at", type=ISO_TIME, help="When it started (ISO 8601).")
@click.option("--detected-at", type=ISO_TIME, help="When it was detected (ISO 8601).")
@click.option("--mitigated-at", type=ISO_TIME, help="When impact was mitigated (ISO 8601).")
@click.option("--resolved-at", type=ISO_TIME, help="When it was resolved (ISO 8601) [default: now, UTC].")
@click.option("--link", "links", multiple=True, metavar="TITLE=URL", help="A link to show in the postmortem "
                                                                          "(repeatable).")
@click.option("--dedup-key", help="The alert or dedup key (what makes two incidents 'the same kind').")
@click.option("--dry-run", is_flag=True, help="Validate and print the incident; start nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print {\"workflow_id\": ..., \"new\": ...}.")
@pass_ctx
def resolve(obj: Context, /, file_: str | None, as_json: bool, dry_run: bool, **flags: Any) -> None:
    """Start the postmortem lifecycle of a resolved incident (once per incident: repeats are ignored).

    \b
    Examples:
      closeloop incident resolve --source api --id INC-1 --title "Checkout 500s" --severity SEV2 \\
          --service checkout --commander alice --participant bob \\
          --started-at 2025-03-01T13:00:00Z --link "Dashboard=https://grafana.example/d/checkout"
      closeloop incident resolve --file incident.json
    """
    from pydantic import ValidationError

    from closeloop.models import Incident

    data: dict[str, Any] = {}
    if file_:
        loaded = read_json(file_)
        if not isinstance(loaded, dict):
            raise bad_input(f"{file_}: the incident must be a JSON object")
        data.update(loaded)
    for key, value in flags.items():
        if key == "links":
            value = [_link(v) for v in value]
        if value not in (None, (), []):
            data[key] = list(value) if isinstance(value, tuple) else value
    data.setdefault("source", "cli")
    if data.get("resolved_at") is None:
        data["resolved_at"] = datetime.now(UTC)
    for required, flag in (("external_id", "--id"), ("title", "--title")):
        if required not in data:
            raise bad_input(f"missing {flag} (or {required!r} in --file): the incident needs an id and a title")
    try:
        inc = Incident.model_validate(data)
    except ValidationError as e:
        raise bad_input(validation_message(e, "incident", INCIDENT_FLAGS)) from None
    if dry_run:
        echo_json(inc.model_dump(mode="json"))
        return
    config = obj.config()

    async def go() -> Any:
        closeloop = await connect(config)
        return await closeloop.start_postmortem(inc)

    started = run(go())
    if as_json:
        echo_json({"workflow_id": started.workflow_id, "new": started.new})
    elif started.new:
        click.echo(f"started {started.workflow_id}")
    else:
        click.echo(f"{started.workflow_id} already exists (duplicate trigger ignored)")


# --------------------------------------------------------------------------- status


def _sa(attrs: Any, key: Any) -> Any:
    try:
        return attrs.get(key)
    except Exception:  # noqa: BLE001 - absent or of another type
        return None


def _visibility(config: Any, e: Exception) -> CliError:
    from temporalio.service import RPCError, RPCStatusCode

    if isinstance(e, RPCError) and e.status in (RPCStatusCode.UNIMPLEMENTED,):
        return CliError(f"the Temporal server at {config.temporal.address} cannot list workflows (no visibility "
                        "store, e.g. the time-skipping test server); use `closeloop status ID` or run "
                        "`closeloop dev`")
    if isinstance(e, RPCError) and e.status == RPCStatusCode.INVALID_ARGUMENT:
        return CliError(f"visibility query refused by {config.temporal.address}: {e.message} (are the Closeloop* "
                        "search attributes registered? `closeloop dev` registers them)")
    raise e


async def _list(config: Any, query: str, limit: int) -> list[Any]:
    from temporalio.service import RPCError

    closeloop = await connect(config)
    out = []
    try:
        async for wf in closeloop.list(query, limit):
            out.append(wf)
    except RPCError as e:
        raise _visibility(config, e) from None
    return out


def _row(wf: Any) -> dict[str, Any]:
    from closeloop import search_attributes as sa

    attrs = wf.typed_search_attributes
    return {
        "workflow_id": wf.id,
        "type": wf.workflow_type,
        "status": wf.status.name.lower() if wf.status else "unknown",
        "stage": _sa(attrs, sa.STAGE),
        "owner": _sa(attrs, sa.OWNER),
        "stage_due": _sa(attrs, sa.STAGE_DUE),
        "stalled": bool(_sa(attrs, sa.STALLED)),
        "severity": _sa(attrs, sa.SEVERITY),
        "services": _sa(attrs, sa.SERVICE) or [],
        "started": wf.start_time,
    }


def _print_state(wid: str, state: Any, status: str) -> None:
    from closeloop.models import ReviewDecision, Stage

    inc = state.plan.incident
    now = datetime.now(UTC)
    due = None
    if state.stage == Stage.drafting and state.draft_chase:
        due = state.draft_chase.due_at
    elif state.stage == Stage.in_review and state.review_chase:
        due = state.review_chase.due_at
    since = state.stages[-1].at if state.stages else None
    services = ", ".join(inc.services) or "no service"
    click.echo(f"{wid}  {inc.title}  [{inc.severity}, {services}]")
    click.echo(f"  workflow:   {status}")
    click.echo(f"  stage:      {state.stage.value}" + (f" (since {fmt_time(since)})" if since else ""))
    click.echo(f"  owner:      {state.owner}")
    click.echo(f"  stage due:  {fmt_time(due)}" + (f" ({fmt_relative(due, now)})" if due else ""))
    click.echo(f"  stalled:    {'YES' if state.stalled else 'no'}")
    if state.meeting:
        m = state.meeting
        click.echo(f"  meeting:    {fmt_time(m.start)} - {m.end.astimezone(UTC):%H:%M} with "
                   f"{', '.join(m.attendees)}")
        if m.unavailable:  # no slot suited everyone: the best one was booked without them
            click.echo(f"              cannot make it (busy then): {', '.join(m.unavailable)}")
    else:
        click.echo("  meeting:    -")
    if state.review_round:
        votes = {r.reviewer: r for r in state.reviews if r.round == state.review_round}
        parts = []
        for reviewer in state.plan.reviewers:
            v = votes.get(reviewer)
            if v is None:
                parts.append(f"{reviewer} pending")
            else:
                word = "approved" if v.decision == ReviewDecision.approve else "requested changes"
                parts.append(f"{reviewer} {word}" + (f" ({v.comment})" if v.comment else ""))
        click.echo(f"  reviews:    round {state.review_round}: " + "; ".join(parts))
    else:
        click.echo(f"  reviews:    none yet (reviewers: {', '.join(state.plan.reviewers) or 'none'})")
    if state.document_ref:
        click.echo(f"  document:   {state.document_ref}")
    elif state.draft_ref:
        click.echo(f"  draft:      {state.draft_ref}")
    if state.cancelled:
        click.echo(f"  cancelled:  by {state.cancelled.by}: {state.cancelled.reason}")
    if not state.items:
        pending = len(state.draft.action_items) if state.draft else 0
        click.echo("  items:      " + (f"{pending} in the draft, opened when published" if pending else "none"))
        return
    click.echo("  items:")
    rows = [[i.id.rsplit("/", 1)[-1], i.title, i.owner, fmt_time(i.due_at), i.ticket_key or "-", i.status.value,
             i.verdict.value if i.verdict else "-"] for i in state.items]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    headers = ["ID", "TITLE", "OWNER", "DUE", "TICKET", "STATUS", "VERDICT"]
    widths = [max(w, len(h)) for w, h in zip(widths, headers, strict=True)]
    for r in [headers, *rows]:
        click.echo("    " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@click.command("status")
@click.argument("postmortem", metavar="[ID]", required=False)
@click.option("--limit", default=200, show_default=True, help="At most this many lifecycles (list only).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (the full state with ID).")
@pass_ctx
def status(obj: Context, postmortem: str | None, limit: int, as_json: bool) -> None:
    """Show one postmortem, or list them all.

    ID is the workflow id (postmortem/api/INC-1) or its shorthand (api/INC-1 or api:INC-1).
    Without ID, lists every lifecycle with its stage, owner, due date and stalled flag (needs a server with
    visibility, e.g. `closeloop dev`).

    \b
    Examples:
      closeloop status api/INC-1
      closeloop status api:INC-1 --json | jq .stage
      closeloop status
    """
    from closeloop.ids import POSTMORTEM_WORKFLOW

    if postmortem:
        wid = postmortem_id(postmortem)
        config = obj.config()

        async def one() -> tuple[Any, str]:
            closeloop = await connect(config)
            from temporalio.api.enums.v1 import WorkflowExecutionStatus

            with workflow_errors("postmortem", wid):
                raw = await closeloop.describe_raw(wid)
                if raw is None:
                    raise CliError(f"no postmortem {wid}")
                info = raw.workflow_execution_info
                if info.type.name != POSTMORTEM_WORKFLOW:
                    raise CliError(f"{wid} is a {info.type.name}, not a postmortem")
                state = await closeloop.postmortem_state(wid)
            status_name = WorkflowExecutionStatus.Name(info.status).removeprefix("WORKFLOW_EXECUTION_STATUS_")
            return state, status_name.lower()

        state, wf_status = run(one())
        if as_json:
            echo_json(state.model_dump(mode="json") if state else None)
        elif state is None:
            click.echo(f"{wid} is starting (no state yet); try again in a moment")
        else:
            _print_state(wid, state, wf_status)
        return

    config = obj.config()
    rows = [_row(wf) for wf in run(_list(config, f'WorkflowType = "{POSTMORTEM_WORKFLOW}"', limit))]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no postmortems yet (start one with `closeloop incident resolve`)")
        return
    now = datetime.now(UTC)
    table([[r["workflow_id"], r["status"], r["stage"] or "-", r["owner"] or "-",
            (fmt_time(r["stage_due"]) + f" ({fmt_relative(r['stage_due'], now)})") if r["stage_due"] else "-",
            "YES" if r["stalled"] else "no"] for r in rows],
          ["ID", "STATUS", "STAGE", "OWNER", "STAGE DUE", "STALLED"])


@click.command("stalled")
@click.option("--limit", default=500, show_default=True, help="At most this many workflows.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def stalled(obj: Context, limit: int, as_json: bool) -> None:
    """List stalled postmortems and overdue action items (one visibility query).

    A postmortem stalls the moment its draft or review passes its due time (when the escalation starts, not
    when it has run out), until the draft is submitted or the review decided; an action item stalls when it
    is open past its due date.

    \b
    Example:
      closeloop stalled --json | jq '.[] | select(.type == "item")'
    """
    from closeloop.client import STALLED_QUERY
    from closeloop.ids import ACTION_ITEM_WORKFLOW, POSTMORTEM_WORKFLOW

    config = obj.config()
    now = datetime.now(UTC)
    rows = []
    for r in (_row(wf) for wf in run(_list(config, STALLED_QUERY, limit))):
        due = r["stage_due"]
        r["type"] = "item" if r["type"] == ACTION_ITEM_WORKFLOW else "postmortem" \
            if r["type"] == POSTMORTEM_WORKFLOW else r["type"]
        r["overdue_seconds"] = int((now - due).total_seconds()) if due and due < now else 0
        rows.append(r)
    rows.sort(key=lambda r: -r["overdue_seconds"])
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("nothing is stalled")
        return
    from datetime import timedelta

    table([[r["type"], r["workflow_id"], r["stage"] or "-", r["owner"] or "-", fmt_time(r["stage_due"]),
            fmt_span(timedelta(seconds=r["overdue_seconds"])) if r["overdue_seconds"] else "-"] for r in rows],
          ["TYPE", "ID", "STAGE", "OWNER", "DUE", "OVERDUE"])


COMMANDS = [incident, status, stalled]
