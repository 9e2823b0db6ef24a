"""The built-in tracker: tickets live in closeloop's own store (`closeloop tickets`)."""

from __future__ import annotations

from closeloop.integrations.base import IntegrationError, Ticket, TicketRequest, Tracker
from closeloop.store.store import Store
from closeloop.store.tables import TicketRow


def _ticket(row: TicketRow) -> Ticket:
    return Ticket(key=row.key, url=f"closeloop://tickets/{row.key}", status=row.status,
                  resolution=row.resolution)


class LocalTracker(Tracker):
    name = "local"

    def __init__(self, store: Store) -> None:
        self.store = store

    def find_by_marker(self, marker: str) -> Ticket | None:
        row = self.store.local.ticket_by_marker(marker)
        return _ticket(row) if row else None

    def create(self, request: TicketRequest) -> Ticket:
        # The marker column is unique, so even a racing duplicate create returns the one ticket.
        return _ticket(self.store.local.create_ticket(
            marker=request.marker, title=request.title, body=request.body, assignee=request.assignee.key,
            priority=request.priority, due_at=request.due_at,
        ))

    def comment(self, ticket_key: str, body: str, idempotency_key: str) -> None:
        self.store.local.add_ticket_comment(ticket_key, body, idempotency_key)

    def statuses(self, ticket_keys: list[str]) -> dict[str, Ticket]:
        return {row.key: _ticket(row) for row in self.store.local.tickets(ticket_keys)}

    def close(self, ticket_key: str, resolution: str | None = None, *, wont_do: bool = False) -> Ticket:
        current = self.statuses([ticket_key]).get(ticket_key)
        if current is None:
            raise IntegrationError(f"no local ticket {ticket_key!r}", retryable=False)
        if current.status != "open":
            return current
        status = "wont_do" if wont_do else "done"
        return _ticket(self.store.local.set_ticket_status(ticket_key, status, resolution or ""))

    def reopen(self, ticket_key: str) -> Ticket:
        current = self.statuses([ticket_key]).get(ticket_key)
        if current is None:
            raise IntegrationError(f"no local ticket {ticket_key!r}", retryable=False)
        if current.status == "open":
            return current
        return _ticket(self.store.local.set_ticket_status(ticket_key, "open"))
