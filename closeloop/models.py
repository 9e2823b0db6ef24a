"""The domain model. Pydantic v2 models that travel through Temporal (pydantic data converter),
the store and the CLI. Pure data: nothing here does I/O, so workflows may import it."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from closeloop.durations import Duration
from closeloop.ids import check_external_id, check_source, postmortem_workflow_id
from closeloop.policy import Policy, QualityCheck


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# C0 and C1 control characters but tab, newline and carriage return: a NUL byte is refused by SQLite
# ("embedded null byte") and PostgreSQL (DataError), and no retry fixes that; the others are never meant.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def without_controls(text: str) -> str:
    """Text with its control characters removed (tab, newline and carriage return stay)."""
    return _CONTROL.sub("", text)


# What people write (drafts, reasons, comments, notes): stored and rendered, so cleaned at the edge too.
CleanText = Annotated[str, AfterValidator(without_controls)]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "incident"


# --------------------------------------------------------------------------- incidents


class Link(Model):
    title: str
    url: str

    @field_validator("title", "url")
    @classmethod
    def _text(cls, v: str) -> str:
        return without_controls(v)


class Incident(Model):
    source: str = Field(description="pagerduty, incidentio, alertmanager, opsgenie, api or cli")
    external_id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=500)
    severity: str = "SEV3"
    services: list[str] = Field(default_factory=list)
    started_at: datetime | None = None
    detected_at: datetime | None = None
    mitigated_at: datetime | None = None
    resolved_at: datetime | None = None
    commander: str | None = None
    participants: list[str] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    dedup_key: str | None = Field(default=None, description="alert or dedup key from the source")
    fingerprint: str = ""
    unmapped_severity: str | None = Field(
        default=None, max_length=100,
        description="the source's severity name that its severity map does not know (the severity is then the "
                    "default, and the lifecycle's timeline says so); None when mapped")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        return check_source(v)

    @field_validator("external_id")
    @classmethod
    def _external_id(cls, v: str) -> str:
        return check_external_id(v)  # the one rule (closeloop.ids): it also goes into URLs and searches

    @field_validator("title", "severity", "commander", "dedup_key")
    @classmethod
    def _text(cls, v: str | None, info: ValidationInfo) -> str | None:
        """The edge for every source (webhooks, API, CLI): control characters are dropped, not refused, so an
        incident is never lost for one (Alertmanager and others do not retry a 4xx)."""
        if v is None:
            return None
        cleaned = without_controls(v)
        if info.field_name == "title" and not cleaned.strip():
            raise ValueError("title must contain text, not only control characters")
        return cleaned

    @field_validator("services", "participants")
    @classmethod
    def _texts(cls, v: list[str]) -> list[str]:
        return [without_controls(x) for x in v]

    @field_validator("started_at", "detected_at", "mitigated_at", "resolved_at")
    @classmethod
    def _tz(cls, v: datetime | None) -> datetime | None:
        return _aware(v)

    @model_validator(mode="after")
    def _derive(self) -> Incident:
        if not self.fingerprint:
            self.fingerprint = compute_fingerprint(self.services, self.dedup_key, self.title)
        return self

    @property
    def key(self) -> str:
        return f"{self.source}:{self.external_id}"

    @property
    def workflow_id(self) -> str:
        return postmortem_workflow_id(self.source, self.external_id)


def compute_fingerprint(services: list[str], dedup_key: str | None, title: str) -> str:
    """What makes two incidents "the same kind": the services plus the alert/dedup key (or the title)."""
    basis = ",".join(sorted(s.lower() for s in services)) + "|" + (dedup_key or slug(title))
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- postmortems


class Stage(str, Enum):
    scheduling = "scheduling"
    collecting_timeline = "collecting_timeline"
    drafting = "drafting"
    in_review = "in_review"
    published = "published"
    following_up = "following_up"
    closed = "closed"
    skipped = "skipped"
    cancelled = "cancelled"


class Person(Model):
    key: str
    name: str
    email: str
    timezone: str = "UTC"
    manager: str | None = None
    team: str | None = None
    handles: dict[str, str] = Field(default_factory=dict)
    channels: list[str] | None = None  # in order; None: [notify] channels
    reminders: Literal["immediate", "digest"] = "immediate"  # digest: one message a day with them all


class Meeting(Model):
    title: str
    start: datetime
    end: datetime
    attendees: list[str]
    calendar_ref: str = ""
    # Attendees who are busy (or outside their working hours) in the slot: booked when no slot fits everyone,
    # the review goes ahead without them. They are invited all the same.
    unavailable: list[str] = Field(default_factory=list)


class TimelineEvent(Model):
    at: datetime
    source: str
    kind: str = "event"  # detection, acknowledge, escalation, mitigation, resolution, deploy, note, ...
    text: CleanText
    actor: str | None = None
    url: str | None = None
    key_moment: bool = False

    @field_validator("at")
    @classmethod
    def _tz(cls, v: datetime) -> datetime:
        return _aware(v)  # type: ignore[return-value]

    def dedup_key(self) -> tuple[str, str, str]:
        return (self.at.astimezone(UTC).isoformat(), self.kind, " ".join(self.text.lower().split()))


Priority = Literal["P1", "P2", "P3", "P4"]
ItemKind = Literal["prevent", "detect", "mitigate", "process"]


class ActionItemSpec(Model):
    title: CleanText = Field(min_length=1, max_length=300)
    description: CleanText = ""
    owner: str
    priority: Priority = "P3"
    kind: ItemKind = "prevent"
    due_in: Duration | None = Field(default=None, description="overrides the policy's due date for the priority")
    done_when: CleanText = Field(default="", max_length=1000, description="how anyone can tell it is done")


class DraftSubmission(Model):
    by: str
    summary: CleanText = Field(min_length=1)
    impact: CleanText = ""
    root_cause: CleanText = ""
    resolution: CleanText = ""
    lessons: CleanText = ""
    action_items: list[ActionItemSpec] = Field(default_factory=list)
    # The sections of a full report (the web app's editor fills them; each is optional, and a draft made before
    # them renders as it did).
    impact_users: CleanText = Field(default="", description="users affected, e.g. '12% of checkouts'")
    impact_duration: CleanText = Field(default="", description="how long, e.g. '42 minutes'")
    impact_money: CleanText = Field(default="", description="revenue or cost, e.g. 'about $18,000'")
    impact_customers: CleanText = Field(default="", description="customers or contracts affected (SLA credits...)")
    contributing_factors: CleanText = ""
    recovery: CleanText = Field(default="", description="temporary versus permanent fixes")
    went_well: CleanText = ""
    went_badly: CleanText = ""
    lucky: CleanText = ""
    timeline: list[TimelineEvent] = Field(default_factory=list, description="the author's edited timeline; "
                                                                            "empty: the collected one")


class Finding(Model):
    """One thing closeloop.quality found in a draft: an action item that is not specific, measurable, assignable,
    realistic or time-bound, or blame language in the report (a hint, never blocking)."""

    check: QualityCheck
    where: str = Field(description='e.g. "action item 2", "root cause", "timeline entry 4"')
    message: str
    suggestion: str = ""
    blocks: bool = Field(default=False, description="the policy's quality.block names this check")


class ExtensionRequest(Model):
    by: str
    extra: Duration
    reason: CleanText = Field(min_length=1)


class Reassignment(Model):
    by: str
    new_owner: str
    reason: CleanText = ""


class ReviewDecision(str, Enum):
    approve = "approve"
    request_changes = "request_changes"


class ReviewVote(Model):
    reviewer: str
    decision: ReviewDecision
    comment: CleanText = ""


class Cancellation(Model):
    by: str
    reason: CleanText = Field(min_length=1)


class RetryRequest(Model):
    """An operator's go-ahead for a lifecycle stalled by a failure no retry could fix (the `retry` signal)."""

    by: str = ""
    note: str = ""


class ReviewRecord(Model):
    round: int
    reviewer: str
    decision: ReviewDecision
    comment: str
    at: datetime


class ChaseState(Model):
    """Where a reminder/escalation chase stands. Carried across continue-as-new."""

    started_at: datetime
    due_at: datetime
    reminders_sent: int = 0
    last_reminder_at: datetime | None = None
    escalations_sent: int = 0
    stalled: bool = False
    snoozed_until: datetime | None = None  # no reminder before this (the owner snoozed them)


class Plan(Model):
    """What the incident's policy and people directory say, resolved once when the lifecycle starts,
    so that a config change never alters a running lifecycle halfway through."""

    postmortem_id: str
    incident: Incident
    policy: Policy
    owner: str
    reviewers: list[str]
    attendees: list[str]
    people: list[str] = Field(description="the people this lifecycle involves (owner, reviewers, attendees, named "
                              "escalation targets, and their managers two levels up); anyone else an action names "
                              "is looked up in the directory then (plans made before this carry the whole "
                              "directory)")
    tracker: str = "local"
    timeline_sources: list[str] = Field(default_factory=lambda: ["incident", "notes"])


class PostmortemInput(Model):
    incident: Incident
    # Tests and the benchmark lower this; production keeps Temporal's own suggestion plus this cap.
    max_history_events: int = 10_000
    resume: PostmortemState | None = None


class ItemStatus(str, Enum):
    open = "open"
    done = "done"
    wont_do = "wont_do"
    cancelled = "cancelled"  # its lifecycle was cancelled or terminated while it was open: nothing is owed


class Verdict(str, Enum):
    effective = "effective"
    ineffective = "ineffective"
    unknown = "unknown"


class ActionItem(Model):
    id: str
    postmortem_id: str
    title: str
    description: str = ""
    owner: str
    priority: Priority = "P3"
    kind: ItemKind = "prevent"
    due_at: datetime
    done_when: str = ""
    tracker: str = "local"
    ticket_key: str | None = None
    ticket_url: str | None = None
    status: ItemStatus = ItemStatus.open
    completed_at: datetime | None = None
    verdict: Verdict | None = None
    verdict_note: str = ""
    recurrences: list[str] = Field(default_factory=list)


class DefeatedItem(Model):
    """A done action item of an earlier postmortem that this incident defeated: its kind of incident (the same
    fingerprint or a shared service) happened again after the item was completed."""

    item_id: str
    postmortem_id: str  # the earlier postmortem's
    title: str
    owner: str
    kind: ItemKind = "prevent"
    completed_at: datetime
    verdict: Verdict | None = None
    matched: str = Field(description='why it is of the same kind: "fingerprint" or "service <name>"')


class StageChange(Model):
    stage: Stage
    at: datetime


class PostmortemState(Model):
    """The full state of one lifecycle: what the `state` Query returns and what continue-as-new carries."""

    plan: Plan
    stage: Stage = Stage.scheduling
    stages: list[StageChange] = Field(default_factory=list)
    owner: str
    meeting: Meeting | None = None
    timeline: list[TimelineEvent] = Field(default_factory=list)
    draft_ref: str | None = None
    draft: DraftSubmission | None = None
    drafts_submitted: int = 0
    draft_chase: ChaseState | None = None
    review_chase: ChaseState | None = None
    extensions: list[ExtensionRequest] = Field(default_factory=list)
    extended_by: Duration = timedelta(0)
    review_round: int = 0
    reviews: list[ReviewRecord] = Field(default_factory=list)
    document_ref: str | None = None
    # every publisher's reference to the published document, by publisher name (local, confluence, github)
    document_refs: dict[str, str] = Field(default_factory=dict)
    # the earlier action items this incident defeated (found when the draft is prepared); their owners were told
    recurs_after: list[DefeatedItem] = Field(default_factory=list)
    items: list[ActionItem] = Field(default_factory=list)
    cancelled: Cancellation | None = None
    failure: str | None = Field(default=None, description="why the lifecycle stopped: a step failed in a way no "
                                "retry fixes; it waits for the `retry` signal (or a cancellation)")
    runs: int = 1
    closed_at: datetime | None = None

    @property
    def stalled(self) -> bool:
        chase = self.review_chase if self.stage == Stage.in_review else self.draft_chase
        return bool(chase and chase.stalled and self.stage in (Stage.drafting, Stage.in_review))


class PostmortemSummary(Model):
    postmortem_id: str
    incident: str
    stage: Stage
    owner: str
    review_rounds: int
    items: list[ActionItem]
    effective: int
    ineffective: int
    document_ref: str | None
    closed_at: datetime | None


# --------------------------------------------------------------------------- action item workflow


class ActionItemInput(Model):
    item: ActionItem
    policy: Policy
    incident: Incident
    postmortem_owner: str
    max_history_events: int = 10_000
    resume: ActionItemState | None = None


TicketStatus = Literal["open", "done", "wont_do", "reopened", "deleted"]


class TicketStatusEvent(Model):
    """A status change seen on the tracker (webhook or reconciliation sweep)."""

    ticket_key: str
    status: TicketStatus
    at: datetime
    source: str = "sync"
    reason: str = Field(default="", description="why, in a person's words (e.g. `ticket close --reason`)")
    moved_to: str | None = Field(default=None, description="the ticket's new key when it was moved (Jira project move)")
    resolution: str = Field(default="", description="the tracker's resolution name (Jira) or state reason (GitHub)")


class CompleteItem(Model):
    by: str
    note: CleanText = ""


class SnoozeRequest(Model):
    """Hold the reminders of a draft or an action item for a while (its owner only)."""

    by: str
    hours: int = Field(default=24, ge=1, le=168, description="how long: 1 hour to 7 days")


class VerdictInput(Model):
    by: str
    effective: bool
    note: CleanText = ""


class WontDoReason(Model):
    """The owner's reason for closing an action item without doing it."""

    by: str
    reason: CleanText = Field(min_length=3, max_length=2000)


ItemPhase = Literal["opening", "tracking", "awaiting_reason", "waiting_effectiveness", "awaiting_verdict", "closed"]


class ActionItemState(Model):
    item: ActionItem
    phase: ItemPhase = "opening"
    chase: ChaseState | None = None
    cycle: int = 0  # bumped when a done item is reopened, so its new reminders are new notifications
    check_at: datetime | None = None
    verdict_due: datetime | None = None
    owner_verdict: VerdictInput | None = None
    sync_events: int = 0
    runs: int = 1
    ticket_change: TicketStatusEvent | None = Field(
        default=None, description="a deleted or moved ticket, for the main loop to act on")
    tickets_replaced: int = 0
    reason_needed: bool = False
    reason_due: datetime | None = None
    wont_do_reason: WontDoReason | None = None
    completed_here: bool = Field(default=False, description="completed in closeloop (not on the ticket): close it")
    ticket_failures: int = Field(default=0, description="times the tracker refused to open the ticket")


# --------------------------------------------------------------------------- sweeps (run by Schedules)


class SweepInput(Model):
    """Empty today; a model so a sweep can grow inputs without breaking running schedules."""

    note: str = ""


class DigestResult(Model):
    """What the managers' stalled-work digest found and who was told (StalledDigestWorkflow's result)."""

    stalled_postmortems: int
    overdue_items: int
    managers_notified: list[str]


SYNC_KINDS = ("done", "wont_do", "reopened", "deleted", "moved")


class TrackerReport(Model):
    tracker: str
    items: int
    calls: int | None = Field(default=None, description="HTTP requests made, when the tracker counts them")
    error: str = ""


class SyncSummary(Model):
    at: datetime
    items_checked: int = 0
    unchanged: int = 0
    signalled: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(SYNC_KINDS, 0),
                                      description="signals per kind; a moved and completed ticket counts in both")
    signals: int = 0
    already_signalled: int = Field(default=0, description="differences an earlier sweep signalled already")
    workflows_gone: int = Field(default=0, description="items whose workflow no longer runs (skipped)")
    cancelled: int = Field(default=0, description="open items whose workflow no longer runs (a terminated "
                                                  "lifecycle): closed as cancelled, their tickets told")
    completed_in_closeloop: int = Field(default=0, description="done items whose ticket is open and was never "
                                                               "seen closed (left alone: no reopening)")
    trackers: list[TrackerReport] = Field(default_factory=list)
    calls: int | None = Field(default=None, description="HTTP requests of the trackers that count them")
    failures: list[str] = Field(default_factory=list, description="`tracker: error` of each failed tracker")


def clamp_non_negative(td: timedelta) -> timedelta:
    return td if td > timedelta(0) else timedelta(0)


PostmortemInput.model_rebuild()
ActionItemInput.model_rebuild()


class PruneResult(Model):
    """What a retention clean-up deleted (or, on a dry run, would delete): rows per table
    (RetentionWorkflow's result, `closeloop db prune --json`)."""

    at: datetime = Field(description="rows older than the retention before this time went")
    dry_run: bool = False
    deleted: dict[str, int] = Field(default_factory=dict, description="rows per table")
    lifecycles: int = Field(default=0, description="closed lifecycles deleted with their records")
    batches: int = Field(default=0, description="transactions that deleted rows")

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


# --------------------------------------------------------------------------- the inbox


class InboxEntry(Model):
    """An incident as the inbox holds it (closeloop.store.inbox): accepted by a webhook or the API, and
    `pending` until the web app's forwarder started its lifecycle (`forwarded`), or Temporal refused it as
    invalid (`refused`, `last_error` says why: for operators, never for API clients)."""

    id: int
    incident: Incident
    via: str
    state: Literal["pending", "forwarded", "refused"]
    received_at: datetime
    attempts: int = 0
    last_error: str | None = None
    forwarded_at: datetime | None = None
