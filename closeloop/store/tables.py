"""SQLAlchemy 2 tables. Schema changes go through Alembic (closeloop/store/migrations)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (naive storage) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class IncidentRow(Base):
    __tablename__ = "incidents"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_incidents_source_external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(500))
    severity: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    postmortem_required: Mapped[bool] = mapped_column(Boolean, default=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)


class IncidentServiceRow(Base):
    __tablename__ = "incident_services"

    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    service: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)


class PostmortemRow(Base):
    __tablename__ = "postmortems"
    # the dashboard: stalled postmortems by stage and due time, and a manager's people's
    __table_args__ = (Index("ix_postmortems_stage_stage_due_at", "stage", "stage_due_at"),
                      Index("ix_postmortems_owner_stage", "owner", "stage"))

    id: Mapped[str] = mapped_column(String(300), primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    owner: Mapped[str] = mapped_column(String(200))
    stage: Mapped[str] = mapped_column(String(32), index=True)
    stalled: Mapped[bool] = mapped_column(Boolean, default=False)
    stage_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    document_ref: Mapped[str | None] = mapped_column(String(1000))
    document_markdown: Mapped[str | None] = mapped_column(Text)
    document_html: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now, onupdate=_now)
    # for the metrics (closeloop/store/insights.py): when it was published (the lifecycle's time), and whether a
    # stage ran past its due time or stalled on the way (then it was not published on time)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    late: Mapped[bool] = mapped_column(Boolean, default=False)


class TimelineEventRow(Base):
    __tablename__ = "timeline_events"
    __table_args__ = (UniqueConstraint("incident_id", "dedup", name="uq_timeline_events_incident_dedup"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    dedup: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(1000))
    key_moment: Mapped[bool] = mapped_column(Boolean, default=False)
    is_note: Mapped[bool] = mapped_column(Boolean, default=False)


class ActionItemRow(Base):
    __tablename__ = "action_items"
    # The dashboard's (closeloop/store/views.py): overdue items most overdue first, everyone's and some owners';
    # done items and their verdicts. Each also holds what the counts group and join by (owner, postmortem_id),
    # so those are index-only scans that never read the wide rows (payload). They replace the single-column
    # indexes on status and owner (their prefixes).
    __table_args__ = (Index("ix_action_items_status_due_at", "status", "due_at", "owner", "postmortem_id"),
                      Index("ix_action_items_owner_status_due_at", "owner", "status", "due_at", "postmortem_id"),
                      Index("ix_action_items_status_owner_verdict", "status", "owner", "verdict", "postmortem_id"))

    id: Mapped[str] = mapped_column(String(400), primary_key=True)
    postmortem_id: Mapped[str] = mapped_column(ForeignKey("postmortems.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    owner: Mapped[str] = mapped_column(String(200))
    priority: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    tracker: Mapped[str] = mapped_column(String(32))
    ticket_key: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verdict: Mapped[str | None] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now, onupdate=_now)
    # the newest ticket status webhook applied: the vendor's own time of it, and its status (stale ones are dropped)
    ticket_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ticket_event_status: Mapped[str | None] = mapped_column(String(16))
    recurrences: Mapped[int] = mapped_column(Integer, default=0)  # incidents of its kind after it was done


class ItemRecurrenceRow(Base):
    """A done action item that a later incident of its kind defeated: the same service or fingerprint failed
    again after the item was completed (closeloop.store.records.link_recurrences, when the later incident's draft
    is prepared). The later postmortem links to the item, and the item shows where it recurred."""

    __tablename__ = "item_recurrences"

    item_id: Mapped[str] = mapped_column(ForeignKey("action_items.id", ondelete="CASCADE"), primary_key=True)
    postmortem_id: Mapped[str] = mapped_column(String(300), primary_key=True, index=True)  # the later one's
    incident: Mapped[str] = mapped_column(String(240))  # the later incident's key, "source:external_id"
    matched: Mapped[str] = mapped_column(String(300))  # why it is of the same kind: "fingerprint" or "service x"
    found_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ReviewRow(Base):
    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("postmortem_id", "round", "reviewer", name="uq_reviews_vote"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    postmortem_id: Mapped[str] = mapped_column(ForeignKey("postmortems.id"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    reviewer: Mapped[str] = mapped_column(String(200))
    decision: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class NotificationRow(Base):
    """The outbox: one row per delivered notification, unique by idempotency key."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(500), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(200), index=True)
    subject: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, doc="the lifecycle's time of the event")
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now, doc="wall-clock time of delivery")
    postmortem_id: Mapped[str] = mapped_column(String(300), index=True)
    item_id: Mapped[str | None] = mapped_column(String(400))
    channel: Mapped[str] = mapped_column(String(32), default="log")


class TicketRow(Base):
    """Tickets of the built-in local tracker."""

    __tablename__ = "local_tickets"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    marker: Mapped[str] = mapped_column(String(400), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    assignee: Mapped[str] = mapped_column(String(200))
    priority: Mapped[str] = mapped_column(String(8))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="open")
    resolution: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now, onupdate=_now)


class TicketCommentRow(Base):
    __tablename__ = "local_ticket_comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_key: Mapped[str] = mapped_column(ForeignKey("local_tickets.key", ondelete="CASCADE"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(500), unique=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)


class MeetingRow(Base):
    """Events of the built-in local calendar."""

    __tablename__ = "local_meetings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(500), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    start: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    end: Mapped[datetime] = mapped_column(UTCDateTime)
    attendees: Mapped[list[str]] = mapped_column(JSON)


class BusyBlockRow(Base):
    """Busy time people declare in the local calendar (`closeloop calendar busy`)."""

    __tablename__ = "local_busy_blocks"
    __table_args__ = (Index("ix_local_busy_blocks_person_start", "person", "start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person: Mapped[str] = mapped_column(String(200))
    start: Mapped[datetime] = mapped_column(UTCDateTime)
    end: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(String(300), default="")


class WebhookDeliveryRow(Base):
    """Deliveries already acted on, by the sender's delivery id: a replayed delivery is acknowledged, not
    applied again (a stale "closed" replayed after a "reopened" must not complete the item again)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("source", "delivery_id", name="uq_webhook_deliveries_source_delivery"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now, index=True)


class RateEventRow(Base):
    """Calls counted against an outside system's rate limit, shared by every worker process (e.g. GitHub's
    secondary limit on content creation). Rows older than the window are pruned as slots are taken."""

    __tablename__ = "rate_events"
    __table_args__ = (Index("ix_rate_events_bucket_at", "bucket", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bucket: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class InboxRow(Base):
    """The durable inbox: every incident a webhook or the API accepted, committed before the answer, unique by
    source and incident id (so "new" vs "duplicate" is the database's word). The web app's forwarder starts
    each row's lifecycle; `due_at` is when a row may next be tried (a claim's lease, or a retry's backoff)."""

    __tablename__ = "incident_inbox"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_incident_inbox_source_external_id"),
                      Index("ix_incident_inbox_state_due_at", "state", "due_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(200))
    incident: Mapped[dict[str, Any]] = mapped_column(JSON)
    via: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, forwarded, refused
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    claim: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    forwarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChannelDeliveryRow(Base):
    """What each channel (email, Slack, chat) did with a notification, one row per (notification key, channel):
    `sent` with the provider's message id (a retry after a crash then sends nothing again), or `failed` for
    good (a bouncing address, an unknown Slack user: the next channel of the person is tried)."""

    __tablename__ = "channel_deliveries"
    __table_args__ = (UniqueConstraint("key", "channel", name="uq_channel_deliveries_key_channel"),
                      Index("ix_channel_deliveries_updated_at", "updated_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(500))
    channel: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16))  # sending, sent, failed, queued
    message_id: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)


class WebAuditRow(Base):
    """What people did through the web app (and its action links), and what it refused: who, what, on which
    postmortem or item, from where. Pruned with the outbox (`[retention] notifications`)."""

    __tablename__ = "web_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    person: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(400), index=True)  # a postmortem or item id, "" for a sign-in
    via: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(500))
    detail: Mapped[str] = mapped_column(Text)


class DraftAutosaveRow(Base):
    """The draft editor's latest autosave, per postmortem and person (goes with its closed lifecycle)."""

    __tablename__ = "draft_autosaves"

    postmortem_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    person: Mapped[str] = mapped_column(String(200), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ActionLinkUseRow(Base):
    """Action links (one-click links in messages) already used, by token id: each works once. A row goes once
    its link has expired (it could not be used again anyway)."""

    __tablename__ = "action_link_uses"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
