"""The small interfaces closeloop talks to the outside world through, one per kind of system: tracker,
notifier, calendar, timeline source, publisher, and the incident and ticket webhooks.

Each vendor is a plugin (closeloop.integrations.plugin) in a folder of its own that implements some of them;
the `local` plugin implements the first five so the embedded default works with no accounts. The worker's
implementations are plain blocking classes (activities run them in a thread pool); webhooks are async
handlers the web app mounts.

Every write takes an idempotency key: calling it twice with the same key must have the effect of once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from closeloop.models import Incident, Meeting, Person, TicketStatus, TimelineEvent
from closeloop.secrets import Secrets

# The names a tracker's templated values (e.g. Jira custom_fields) may use, e.g. "{service}-{priority}": the
# keys of TicketRequest.context (closeloop.activities.tickets.ticket_context).
TICKET_TEMPLATE_FIELDS = ("item_id", "postmortem_id", "incident", "incident_title", "severity", "service",
                          "priority", "kind", "owner", "due")


class IntegrationError(Exception):
    """A failure talking to an outside system. `retryable=False` for errors no retry can fix."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class HttpIntegrationError(IntegrationError):
    """An outside system's HTTP API failed: its status, and how long it asked us to wait (Retry-After or a
    rate-limit reset), which the activity turns into the retry's delay."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.retry_after = retry_after

    @staticmethod
    def is_retryable(status: int | None, *, rate_limited: bool = False) -> bool:
        """Timeouts, throttling and server errors pass; other 4xx (bad request, auth, not found) do not."""
        return rate_limited or (status is not None and (status in (408, 429) or status >= 500))


class SlotTaken(IntegrationError):
    """The calendar slot was booked by someone else between looking and booking: pick again."""


# --------------------------------------------------------------------------- tracker


class TicketRequest(BaseModel):
    marker: str = Field(description="deterministic marker of the action item; creation looks it up first")
    title: str
    body: str
    assignee: Person
    priority: str
    due_at: datetime
    labels: list[str] = Field(default_factory=list)
    service: str | None = Field(default=None, description="the incident's first service: picks project / repository")
    context: dict[str, str] = Field(default_factory=dict,
                                    description="values for templated tracker settings (config TICKET_TEMPLATE_FIELDS)")


class Ticket(BaseModel):
    key: str
    url: str
    status: Literal["open", "done", "wont_do", "deleted"] = "open"
    resolution: str = ""


class Tracker(ABC):
    """Where action items live as tickets (local store, Jira, GitHub)."""

    name: str

    @abstractmethod
    def find_by_marker(self, marker: str) -> Ticket | None: ...

    @abstractmethod
    def create(self, request: TicketRequest) -> Ticket: ...

    @abstractmethod
    def comment(self, ticket_key: str, body: str, idempotency_key: str) -> None: ...

    @abstractmethod
    def statuses(self, ticket_keys: list[str]) -> dict[str, Ticket]:
        """Current state of many tickets in as few calls as the tracker allows."""

    @abstractmethod
    def close(self, ticket_key: str, resolution: str | None = None, *, wont_do: bool = False) -> Ticket:
        """Close the ticket as done, or as won't do (`wont_do`), with the tracker's own resolution name when
        given; nothing when it is closed already. Returns its state after."""

    @abstractmethod
    def reopen(self, ticket_key: str) -> Ticket:
        """Open a closed ticket again; nothing when it is open. Returns its state after."""

    def ensure_ticket(self, request: TicketRequest) -> Ticket:
        """Create the ticket unless one with the marker exists: safe to retry after a lost response."""
        return self.find_by_marker(request.marker) or self.create(request)


# --------------------------------------------------------------------------- notifier


class NotificationAction(BaseModel):
    """Something the recipient can do from the message (a button in Slack, a link in an email): `url` opens a
    page; otherwise `action` and `value` come back through the channel's interactivity endpoint."""

    action: str  # open_draft, approve, request_changes, item_done, effective, ineffective, snooze
    label: str
    url: str | None = None
    value: str = ""


class Notification(BaseModel):
    key: str = Field(description="idempotency key: one delivery per key, ever")
    kind: str  # reminder, escalation, invite, announce, review_request, verdict_request, ineffective, ...
    recipient: str  # person key
    subject: str
    body: str
    at: datetime = Field(description="the lifecycle's own (workflow) time of the event")
    postmortem_id: str
    item_id: str | None = None
    links: dict[str, str] = Field(default_factory=dict, description="postmortem, item: the web app's pages")
    actions: list[NotificationAction] = Field(default_factory=list)


class Notifier(ABC):
    """A recorder every notification goes to (the built-in log and outbox, an audit feed)."""

    name: str

    @abstractmethod
    def send(self, notification: Notification, person: Person | None) -> bool:
        """Deliver once. Returns False when this key was already delivered (nothing sent again)."""


class Channel(ABC):
    """A way to reach a person where they work (email, Slack, a chat webhook). Each person's channels, in
    order, come from the directory (`channels`) or `[notify] channels`; the notify activity sends through the
    first that reaches them, records the provider's message id (closeloop.store.outbox), and falls back to the
    next one when a channel fails for good. Raise IntegrationError(retryable=True) for what a retry may fix
    (the server is down, 429): the activity retries with backoff and nothing falls back."""

    name: str

    @abstractmethod
    def address(self, person: Person) -> str | None:
        """The person's address on this channel (an email address, a Slack user id or handle), or None."""

    @abstractmethod
    def deliver(self, notification: Notification, person: Person, address: str) -> str:
        """Send it; the provider's id of the message. IntegrationError(retryable=False) when it can never
        reach this address (a bounce at SMTP time, a user not found, a revoked token)."""

    def find_sent(self, notification: Notification, person: Person, address: str) -> str | None:
        """The provider's id of an earlier delivery of this notification's key, when the provider can tell (a
        crash between sending and recording): then nothing is sent again. None when it cannot tell."""
        return None

    def post(self, notification: Notification, room: str) -> str:
        """Post an announcement to a room of the team (`[notify] announce`: a Slack channel id; "" means the
        channel's own default room). The provider's id of the message."""
        raise IntegrationError(f"the {self.name} channel cannot post to a room", retryable=False)


# --------------------------------------------------------------------------- calendar


class Interval(BaseModel):
    start: datetime
    end: datetime


class Calendar(ABC):
    name: str

    @abstractmethod
    def busy(self, people: list[Person], start: datetime, end: datetime) -> dict[str, list[Interval]]:
        """Busy intervals per person key in [start, end)."""

    @abstractmethod
    def invite(self, meeting: Meeting, people: list[Person], idempotency_key: str) -> str:
        """Send the invite; returns the calendar's reference for the event."""

    def find(self, idempotency_key: str) -> Meeting | None:
        """The meeting already booked under this key, if the calendar can tell (retries then reuse it)."""
        return None

    def reaches(self, person: Person) -> bool:
        """Whether booking here puts the meeting in front of `person` (in their own calendar, or an invitation
        the calendar sends). Those it does not reach get an e-mailed invitation when `[notifiers.email]
        calendar_invites` is on (closeloop.integrations.email.invites)."""
        return True

    def sequence(self, idempotency_key: str) -> int | None:
        """The iCalendar SEQUENCE of the event booked under the key (cancelled or not), or None when the calendar
        keeps none or nothing is booked: e-mailed invitations follow it."""
        return None

    def reschedule(self, meeting: Meeting, people: list[Person], idempotency_key: str) -> str:
        """Move the event booked under this key to `meeting`'s slot and attendees (a new slot, a reassigned
        owner): the same event, updated, its attendees told (iCalendar SEQUENCE + 1). Returns its reference.
        Idempotent: rescheduling to what is already booked changes nothing."""
        raise NotImplementedError(f"the {self.name} calendar cannot reschedule")

    def cancel(self, idempotency_key: str) -> bool:
        """Cancel the event booked under this key, its attendees told (iCalendar METHOD:CANCEL). False when
        nothing is booked under it (or it is cancelled already)."""
        raise NotImplementedError(f"the {self.name} calendar cannot cancel")


# --------------------------------------------------------------------------- timeline


_progress: ContextVar[Callable[..., None] | None] = ContextVar("closeloop_timeline_progress", default=None)


def report_progress(*details: Any) -> None:
    """A source calls this after each page it reads; inside an activity it heartbeats (see `progress_to`)."""
    callback = _progress.get()
    if callback is not None:
        callback(*details)


@contextmanager
def progress_to(callback: Callable[..., None]) -> Iterator[None]:
    """Send `report_progress` calls of the code run in this context (this thread) to `callback`."""
    token = _progress.set(callback)
    try:
        yield
    finally:
        _progress.reset(token)


class TimelineSource(ABC):
    """Fetches what one outside system saw of an incident. Long fetches call `report_progress()` per page."""

    name: str

    @abstractmethod
    def fetch(self, incident: Incident) -> list[TimelineEvent]: ...


# --------------------------------------------------------------------------- publisher


class Document(BaseModel):
    postmortem_id: str  # a postmortem's id; for a report, the report's (e.g. "reports/effectiveness/<period>")
    title: str
    markdown: str
    html: str
    kind: Literal["postmortem", "report"] = "postmortem"  # a report is not a postmortem of the library
    started_at: datetime | None = Field(default=None, description="when the incident started (else was detected, "
                                        "else its lifecycle began): dates the document, e.g. a Git publisher's path")


class Publisher(ABC):
    name: str

    @abstractmethod
    def publish(self, document: Document, idempotency_key: str) -> str:
        """Store the document where readers find it; returns its reference (URL or path)."""


# --------------------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class StatusChange:
    """What a tracker's webhook delivery says about one ticket: `keys` are the keys to look the item up by, in
    order (after a move: the old key, then the new one). `version` is the vendor's own time of the change
    (Jira's `timestamp`, GitHub's `issue.updated_at`): deliveries are applied in its order, so a stale one
    replayed under a new delivery id is ignored; None when the delivery carries none (not ordered)."""

    tracker: str
    keys: tuple[str, ...]
    status: TicketStatus
    at: datetime
    reason: str = ""
    moved_to: str | None = None
    version: datetime | None = None


class ActionRefused(Exception):
    """A person's action that changed nothing (`WebhookContext.act`): the reason, worded for them (the Update
    validator's, a button value that names nothing, a lifecycle that has ended). `retryable`: closeloop could not
    decide (Temporal unavailable or slow), so the same press may work later."""

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class WebhookContext(Protocol):
    """What the web app gives a webhook: its route's body limit (`Webhook.max_body_bytes`), the secrets, and the
    roads into closeloop."""

    max_body_bytes: int
    secrets: Secrets

    async def start(self, incident: Incident, via: str) -> Response:
        """Start the incident's lifecycle (once: a repeat is `{"new": false}`); the 202 answer."""

    async def add_timeline(self, incident: Incident, events: list[TimelineEvent], *, notes: bool = False,
                           known_only: bool = False) -> int | None:
        """Store timeline events of the incident; None when `known_only` and the incident is not recorded."""

    async def ticket_status(self, change: StatusChange | str, source: str, delivery: str) -> Response:
        """Tell the action item whose ticket changed (once per delivery id), or, for a str (why the delivery
        changes nothing), answer 202 ignored; the answer for the sender."""

    async def act(self, person: str, action: str, value: str, note: str = "") -> str:
        """Run a message button's action as `person` (a directory key): `action` is one of
        closeloop.message_actions.CHANGING, `value` the button's (`<postmortem id>` or `<postmortem id>#<item
        id>`), `note` the comment it records. The same Workflow Update as the CLI's, whose validator decides
        whether the person may: its answer, or ActionRefused with the reason, worded for the person."""


class Webhook(ABC):
    """A vendor's webhook endpoint, mounted by the web app at `POST /webhooks/<path>`. It authenticates the
    delivery (constant-time compares), parses it, and answers with `Reject` (a JSON 4xx) or a response."""

    path: str
    secret_names: tuple[str, ...] = ()  # the environment variables that authenticate it (any one suffices)
    # The largest body this route takes (413 above), from the vendor's documented maximum: `ctx.max_body_bytes`
    # is this for the webhook's route. [web] max_body_bytes is the API's limit only.
    max_body_bytes: int = 1024 * 1024

    @abstractmethod
    async def handle(self, request: Request, ctx: WebhookContext) -> Response: ...


class IncidentWebhook(Webhook):
    """An incident tool's webhook: a resolved incident starts its lifecycle (`ctx.start`)."""


class TicketWebhook(Webhook):
    """A tracker's webhook: a ticket closed, reopened, deleted or moved reaches its item (`ctx.ticket_status`)."""


class InteractionWebhook(Webhook):
    """A chat tool's interactivity endpoint: a person pressed a button of one of closeloop's messages, and it runs
    as them (`ctx.act`)."""
