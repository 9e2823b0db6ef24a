"""Open the action item's ticket exactly once, and check for recurrences of the incident."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from temporalio import activity

from closeloop.activities.support import external_errors, log, non_retryable
from closeloop.directory import Directory
from closeloop.integrations.base import Ticket, TicketRequest, Tracker
from closeloop.models import ActionItem, Incident, ItemStatus, Model
from closeloop.store.store import Store


class OpenTicketInput(Model):
    item: ActionItem
    incident: Incident
    postmortem_ref: str | None = None


def marker_for(item: ActionItem) -> str:
    """The deterministic marker creation looks up first, so a retry never opens a second ticket."""
    return f"closeloop:{item.id}"


def postmortem_link(store: Store, postmortem_id: str, given: str | None = None) -> str:
    """Where a ticket's reader finds the postmortem: the reference given, else the published document
    (the publisher's URL or path, kept in the store), else the postmortem id."""
    if given:
        return given
    row = store.records.get_postmortem(postmortem_id)
    return (row.document_ref if row is not None and row.document_ref else None) or postmortem_id


def ticket_context(item: ActionItem, incident: Incident) -> dict[str, str]:
    """The values templated tracker settings may use (closeloop.config.TICKET_TEMPLATE_FIELDS)."""
    return {"item_id": item.id, "postmortem_id": item.postmortem_id, "incident": incident.key,
            "incident_title": incident.title, "severity": incident.severity,
            "service": incident.services[0] if incident.services else "", "priority": item.priority,
            "kind": item.kind, "owner": item.owner, "due": item.due_at.date().isoformat()}


class CancelTicketInput(Model):
    item: ActionItem
    reason: str  # why the item is cancelled, for the comment on its ticket


class RecurrenceInput(Model):
    incident: Incident
    since: datetime
    until: datetime


def cancel_ticket(tracker: Callable[[str], Tracker], item: ActionItem, reason: str, *, close: bool) -> Ticket | None:
    """Comment on a cancelled item's ticket and close it (`close`) as won't do; the cancel_ticket activity and the
    ticket sweep (items of a terminated lifecycle) share it."""
    if not item.ticket_key:
        return None
    impl = tracker(item.tracker)
    text = (f"closeloop: this action item is cancelled: {reason}. Nothing more is tracked for it"
            + (", so the ticket is closed." if close else "; the ticket is left as it is."))
    with external_errors(f"commenting on the ticket {item.ticket_key} of {item.id}"):
        impl.comment(item.ticket_key, text, f"{item.id}/cancelled")
    ticket = None
    if close:
        with external_errors(f"closing the ticket {item.ticket_key} of {item.id}"):
            ticket = impl.close(item.ticket_key, wont_do=True)
    log().info("ticket of a cancelled item", item=item.id, ticket=item.ticket_key, closed=close)
    return ticket


class TicketActivities:
    """Tickets and recurrences; holds the directory, the trackers (by name) and the store."""

    def __init__(self, people: Directory, tracker: Callable[[str], Tracker], store: Store, *,
                 close_on_cancel: bool = True) -> None:
        self.people = people
        self.tracker = tracker
        self.store = store
        self.close_on_cancel = close_on_cancel  # [tickets] close_on_cancel

    @activity.defn(name="open_ticket")
    def open_ticket(self, inp: OpenTicketInput) -> Ticket:
        owner = self.people.person(inp.item.owner)
        if owner is None:
            raise non_retryable(f"action item owner {inp.item.owner!r} is not in the people directory")
        body = "\n".join([
            inp.item.description or inp.item.title,
            "",
            f"Action item of the postmortem {inp.item.postmortem_id} ({inp.item.kind}, {inp.item.priority}).",
            f"Postmortem: {postmortem_link(self.store, inp.item.postmortem_id, inp.postmortem_ref)}",
            f"Incident: {inp.incident.title} [{inp.incident.key}]",
            *(f"{link.title}: {link.url}" for link in inp.incident.links),
            "",
            f"closeloop marker: {marker_for(inp.item)}",
        ])
        service = inp.incident.services[0] if inp.incident.services else None
        with external_errors(f"opening the ticket of {inp.item.id}"):
            ticket = self.tracker(inp.item.tracker).ensure_ticket(TicketRequest(
                marker=marker_for(inp.item), title=inp.item.title, body=body, assignee=owner,
                priority=inp.item.priority, due_at=inp.item.due_at, labels=["closeloop", f"postmortem-{inp.item.kind}"],
                service=service, context=ticket_context(inp.item, inp.incident),
            ))
        log().info("ticket ready", item=inp.item.id, ticket=ticket.key, service=service)
        return ticket

    @activity.defn(name="close_ticket")
    def close_ticket(self, item: ActionItem) -> Ticket | None:
        """Close the item's ticket once the item is closed in closeloop: `done` closes it as completed, `wont_do`
        with the tracker's won't-do resolution. Idempotent: a ticket already closed is left as it is; an item
        without a ticket, or still open, closes nothing (None)."""
        if not item.ticket_key or item.status == ItemStatus.open:
            return None
        wont_do = item.status in (ItemStatus.wont_do, ItemStatus.cancelled)
        with external_errors(f"closing the ticket {item.ticket_key} of {item.id}"):
            ticket = self.tracker(item.tracker).close(item.ticket_key, wont_do=wont_do)
        log().info("ticket closed", item=item.id, ticket=ticket.key, status=ticket.status, resolution=ticket.resolution)
        return ticket

    @activity.defn(name="cancel_ticket")
    def cancel_ticket(self, inp: CancelTicketInput) -> Ticket | None:
        """The item was cancelled with its lifecycle: say so on its ticket (once, by key), and close the ticket as
        won't do when `[tickets] close_on_cancel` (the default) says so. None when the item has no ticket."""
        return cancel_ticket(self.tracker, inp.item, inp.reason, close=self.close_on_cancel)

    @activity.defn(name="find_recurrences")
    def find_recurrences(self, inp: RecurrenceInput) -> list[str]:
        """Keys of incidents of the same kind (shared service or fingerprint) in [since, until]."""
        found = self.store.records.similar_incidents(
            services=inp.incident.services, fingerprint=inp.incident.fingerprint, since=inp.since, until=inp.until,
            exclude=(inp.incident.source, inp.incident.external_id),
        )
        return [i.key for i in found]
