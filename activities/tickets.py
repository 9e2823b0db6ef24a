"""Open the action item's ticket exactly once, and check for recurrences of the incident."""

from __future__ import annotations

from datetime import datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._shared import deps, external_errors, log
from closeloop.models import ActionItem, Incident, Model
from integrations.base import Ticket, TicketRequest


class OpenTicketInput(Model):
    item: ActionItem
    incident: Incident
    postmortem_ref: str | None = None


def marker_for(item: ActionItem) -> str:
    """The deterministic marker creation looks up first, so a retry never opens a second ticket."""
    return f"closeloop:{item.id}"


@activity.defn
def open_ticket(inp: OpenTicketInput) -> Ticket:
    d = deps()
    owner = d.config.person(inp.item.owner)
    if owner is None:
        raise ApplicationError(f"action item owner {inp.item.owner!r} is not in the people directory",
                               type="NonRetryable", non_retryable=True)
    body = "\n".join([
        inp.item.description or inp.item.title,
        "",
        f"Action item of the postmortem {inp.item.postmortem_id} ({inp.item.kind}, {inp.item.priority}).",
        f"Incident: {inp.incident.title} [{inp.incident.key}]",
        *(f"Postmortem: {inp.postmortem_ref}" for _ in [0] if inp.postmortem_ref),
        *(f"{link.title}: {link.url}" for link in inp.incident.links),
        "",
        f"closeloop marker: {marker_for(inp.item)}",
    ])
    with external_errors(f"opening the ticket of {inp.item.id}"):
        ticket = d.tracker(inp.item.tracker).ensure_ticket(TicketRequest(
            marker=marker_for(inp.item), title=inp.item.title, body=body, assignee=owner,
            priority=inp.item.priority, due_at=inp.item.due_at, labels=["closeloop", f"postmortem-{inp.item.kind}"],
        ))
    log().info("ticket ready", item=inp.item.id, ticket=ticket.key)
    return ticket


class RecurrenceInput(Model):
    incident: Incident
    since: datetime
    until: datetime


@activity.defn
def find_recurrences(inp: RecurrenceInput) -> list[str]:
    """Keys of incidents of the same kind (shared service or fingerprint) in [since, until]."""
    found = deps().store.similar_incidents(
        services=inp.incident.services, fingerprint=inp.incident.fingerprint, since=inp.since, until=inp.until,
        exclude=(inp.incident.source, inp.incident.external_id),
    )
    return [i.key for i in found]
