"""What the web app's pages read and write in closeloop's store, as plain data and one narrow interface
(`WebViews`): the dashboard, a person's work, the notifications of a postmortem, the audit log, the draft
editor's autosaves and the single use of an action link. closeloop.store.views.Views implements it; the web
app never imports the store (whoever builds the app passes one in: closeloop.serving).

Why the store, not Temporal visibility: the dashboard groups and counts across every lifecycle (by owner,
severity, service, ageing) and filters by the people a manager may see. Those are indexed SQL aggregates that
stay fast at 10,000 postmortems and 50,000 items, on SQLite and PostgreSQL alike; a visibility query returns
executions one page at a time and cannot group. The activities write the store at every stage change, so it is
as fresh as the workflows' last step. A postmortem's own page asks its workflow (a Query) for the live state."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

# Overdue items by how long they are overdue: (label, lower bound in days, upper bound in days or None).
AGEING_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("1-7 days", 0, 7), ("8-30 days", 7, 30), ("31-90 days", 30, 90), ("over 90 days", 90, None))


class PostmortemView(BaseModel):
    id: str
    title: str
    severity: str
    services: list[str] = Field(default_factory=list)
    owner: str
    stage: str
    stalled: bool = False
    stage_due_at: datetime | None = None
    resolved_at: datetime | None = None
    updated_at: datetime | None = None
    document_ref: str | None = None


class ItemView(BaseModel):
    id: str
    postmortem_id: str
    title: str
    owner: str
    priority: str
    kind: str
    due_at: datetime
    status: str
    completed_at: datetime | None = None
    verdict: str | None = None
    ticket_key: str | None = None
    ticket_url: str | None = None
    severity: str = ""
    services: list[str] = Field(default_factory=list)


class DashboardFilter(BaseModel):
    """`owners`: only work owned by these people (None: everyone's, for an admin). The rest narrow further."""

    owners: list[str] | None = None
    service: str | None = None
    severity: str | None = None
    limit: int = Field(default=200, ge=1, le=1000, description="rows of each list; the counts cover them all")


class Counts(BaseModel):
    stalled: int = 0
    overdue: int = 0


class Dashboard(BaseModel):
    stalled: list[PostmortemView]  # the most overdue first
    stalled_total: int
    overdue: list[ItemView]  # the most overdue first
    overdue_total: int
    by_owner: dict[str, Counts]
    by_severity: dict[str, Counts]
    by_service: dict[str, Counts]
    ageing: dict[str, int]  # AGEING_BUCKETS' labels -> overdue items
    closed_items: int  # done items in scope
    verified_effective: int
    verified_ineffective: int


class MyWork(BaseModel):
    drafts: list[PostmortemView]  # postmortems the person owns that wait for their draft
    items: list[ItemView]  # their open items, due first
    verdicts: list[ItemView]  # their done items with no effectiveness verdict yet
    in_review: list[PostmortemView]  # postmortems in review (the page asks each whether the person votes)


class NotificationView(BaseModel):
    kind: str
    recipient: str
    subject: str
    at: datetime
    sent_at: datetime
    channel: str
    item_id: str | None = None
    deliveries: list[str] = Field(default_factory=list)  # "email: sent", "slack: failed (reason)"


class AuditEntry(BaseModel):
    at: datetime
    person: str
    action: str  # e.g. "review.approve", "draft.submit", "item.complete", "signin"
    target: str  # a postmortem or item id, or "" for a sign-in
    via: str  # "web", "link", "cli-operator"
    address: str = ""  # the client's IP address (or the proxy's forwarded one)
    outcome: str = "ok"  # "ok", or "refused: <reason>"
    detail: str = ""


class WebViews(Protocol):
    def dashboard(self, filters: DashboardFilter, now: datetime) -> Dashboard: ...

    def my_work(self, person: str, now: datetime) -> MyWork: ...

    def postmortem(self, postmortem_id: str) -> PostmortemView | None: ...

    def items(self, postmortem_id: str) -> list[ItemView]: ...

    def notifications(self, postmortem_id: str, limit: int = 200) -> list[NotificationView]: ...

    def record_audit(self, entry: AuditEntry) -> None: ...

    def audit(self, target: str, limit: int = 200) -> list[AuditEntry]: ...

    def save_draft(self, postmortem_id: str, person: str, data: dict[str, Any], at: datetime) -> None: ...

    def saved_draft(self, postmortem_id: str, person: str) -> tuple[dict[str, Any], datetime] | None: ...

    def discard_draft(self, postmortem_id: str, person: str) -> None: ...

    def use_link(self, token_id: str, expires_at: datetime) -> bool:
        """Record that the action link `token_id` was used: True the first time, False ever after."""
        ...
