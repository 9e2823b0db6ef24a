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

from pydantic import BaseModel, Field, computed_field

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
    recurred_in: list[str] = Field(default_factory=list)  # later postmortems of its kind, after it was done


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


# ---------------------------------------------------------------------- the library and the numbers


class LibraryFilter(BaseModel):
    query: str = Field(default="", max_length=200, description="words to find in the title and the document")
    owners: list[str] | None = None  # None: everyone's
    service: str | None = None
    severity: str | None = None
    since: datetime | None = None  # published at or after
    until: datetime | None = None  # published before
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0, le=100_000)


class LibraryHit(BaseModel):
    postmortem: PostmortemView
    published_at: datetime | None = None
    snippet: str = ""  # plain text around the first match (the page escapes it)


class Library(BaseModel):
    hits: list[LibraryHit]
    total: int


class Share(BaseModel):
    """`on_time` of `total`; `rate` is None when there is nothing to count."""

    on_time: int = 0
    total: int = 0

    @property
    def rate(self) -> float | None:
        return self.on_time / self.total if self.total else None


class Effectiveness(BaseModel):
    effective: int = 0
    ineffective: int = 0
    unknown: int = 0
    recurrences: int = 0  # incidents of the same kind after the item was done

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rate(self) -> float | None:
        judged = self.effective + self.ineffective
        return self.effective / judged if judged else None


class Month(BaseModel):
    month: str  # "2026-11"
    published: Share  # postmortems published that month, on time or not
    items_done: Share  # items completed that month, on time or not
    median_hours_to_publish: float | None = None
    effectiveness: Effectiveness


class Metrics(BaseModel):
    published_by_severity: dict[str, Share]
    median_hours_to_publish: float | None
    hours_to_publish_by_severity: dict[str, float]  # the median, per severity
    items_on_time: Share
    overdue_by_age: dict[str, int]  # AGEING_BUCKETS' labels
    effectiveness_by_service: dict[str, Effectiveness]
    effectiveness_by_kind: dict[str, Effectiveness]
    months: list[Month]  # oldest first


class RelatedPostmortem(BaseModel):
    """An earlier postmortem of the same kind (a shared service or the same fingerprint), with its action items
    and how they went: what the author and the reviewers of a new one should read first."""

    postmortem: PostmortemView
    items: list[ItemView] = Field(default_factory=list)


class RecurredItem(BaseModel):
    """A done action item a later incident of its kind defeated, and the later postmortems it recurred in."""

    item: ItemView
    recurred_in: list[str]


class FailingService(BaseModel):
    """A service that keeps failing: its incidents in the period (at least `[reports] failing_after`)."""

    service: str
    incidents: int
    postmortems: list[str] = Field(default_factory=list)  # newest first, at most 10
    ineffective_items: int = 0  # of its items completed in the period
    recurrences: int = 0


class EffectivenessReport(BaseModel):
    """The effectiveness review for reliability leads (closeloop.store.insights.StoreInsights.effectiveness):
    the action items completed in [since, until) and how they went, what recurred, what is overdue at `until`,
    and the services that keep failing. The monthly Schedule and `closeloop report effectiveness` make the same."""

    since: datetime
    until: datetime
    items_done: int = 0  # completed in the period
    verdicts: Effectiveness = Field(default_factory=Effectiveness)  # of those
    awaiting_verdict: int = 0  # of those, their effectiveness review not concluded yet
    by_service: dict[str, Effectiveness] = Field(default_factory=dict)
    by_kind: dict[str, Effectiveness] = Field(default_factory=dict)
    overdue_items: int = 0  # open and past their due date at `until`
    overdue_by_age: dict[str, int] = Field(default_factory=dict)  # AGEING_BUCKETS' labels
    failing_services: list[FailingService] = Field(default_factory=list)  # most incidents first
    recurred: list[RecurredItem] = Field(default_factory=list)  # recurrences found in the period, oldest first


class LiveCounts(BaseModel):
    """What the lifecycle gauges report (closeloop.metrics): open lifecycles by stage, stalled postmortems, and
    open action items past their due date."""

    stages: dict[str, int] = Field(default_factory=dict)
    stalled: int = 0
    overdue: int = 0


class Insights(Protocol):
    """The library and the numbers: closeloop.store.insights.StoreInsights implements it."""

    def related(self, postmortem_id: str, limit: int = 10) -> list[RelatedPostmortem]: ...

    def library(self, filters: LibraryFilter) -> Library: ...

    def metrics(self, owners: list[str] | None, now: datetime, months: int = 12) -> Metrics: ...

    def effectiveness(self, since: datetime, until: datetime, failing_after: int = 2) -> EffectivenessReport: ...

    def live_counts(self, now: datetime) -> LiveCounts: ...
