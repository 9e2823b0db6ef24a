"""The store: every read and write closeloop makes to its database. Blocking (SQLAlchemy sessions);
activities call it from their thread pool. Writes that may be retried are idempotent by key."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Integer, cast, create_engine, delete, event, func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from closeloop.models import ActionItem, Incident, ReviewRecord, TimelineEvent
from closeloop.store.tables import (
    ActionItemRow,
    BusyBlockRow,
    IncidentRow,
    IncidentServiceRow,
    MeetingRow,
    NotificationRow,
    PostmortemRow,
    RateEventRow,
    ReviewRow,
    TicketCommentRow,
    TicketRow,
    TimelineEventRow,
    WebhookDeliveryRow,
)

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:  # pragma: no cover - trivial
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def upgrade(url: str) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    if url.startswith("sqlite"):
        make_engine(url).dispose()  # creates the parent directory
    command.upgrade(cfg, "head")


class Store:
    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        if migrate:
            upgrade(url)
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._booking_lock = threading.Lock()  # SQLite: one worker process; PostgreSQL adds an advisory lock

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s, s.begin():
            yield s

    def _insert_once(self, row: Any) -> bool:
        """Insert; False if a unique key says it is already there (the idempotent path)."""
        try:
            with self.session() as s:
                s.add(row)
            return True
        except IntegrityError:
            return False

    # ------------------------------------------------------------------ incidents

    def record_incident(self, incident: Incident, *, postmortem_required: bool = True) -> int:
        payload = incident.model_dump(mode="json")
        with self.session() as s:
            row = s.scalar(
                select(IncidentRow).where(
                    IncidentRow.source == incident.source, IncidentRow.external_id == incident.external_id
                )
            )
            if row is None:
                row = IncidentRow(source=incident.source, external_id=incident.external_id)
                s.add(row)
            row.title, row.severity, row.fingerprint = incident.title, incident.severity, incident.fingerprint
            row.started_at, row.resolved_at = incident.started_at, incident.resolved_at
            row.postmortem_required, row.payload = postmortem_required, payload
            s.flush()
            services = set(incident.services)
            existing = set(s.scalars(select(IncidentServiceRow.service).where(IncidentServiceRow.incident_id == row.id)))
            if existing - services:  # services the incident no longer lists must stop matching similar_incidents
                s.execute(delete(IncidentServiceRow).where(IncidentServiceRow.incident_id == row.id,
                                                           IncidentServiceRow.service.in_(existing - services)))
            for service in services - existing:
                s.add(IncidentServiceRow(incident_id=row.id, service=service))
            return row.id

    def incident_id(self, source: str, external_id: str) -> int | None:
        with self.session() as s:
            return s.scalar(
                select(IncidentRow.id).where(IncidentRow.source == source, IncidentRow.external_id == external_id)
            )

    def get_incident(self, source: str, external_id: str) -> Incident | None:
        with self.session() as s:
            row = s.scalar(
                select(IncidentRow).where(IncidentRow.source == source, IncidentRow.external_id == external_id)
            )
            return Incident.model_validate(row.payload) if row else None

    def similar_incidents(
        self, *, services: list[str], fingerprint: str, since: datetime, until: datetime, exclude: tuple[str, str]
    ) -> list[Incident]:
        """Incidents of the same kind (a shared service or the same fingerprint) that started in [since, until]."""
        when = func.coalesce(IncidentRow.started_at, IncidentRow.resolved_at, IncidentRow.recorded_at)
        with self.session() as s:
            same_service = select(IncidentServiceRow.incident_id).where(IncidentServiceRow.service.in_(services))
            rows = s.scalars(
                select(IncidentRow)
                .where(or_(IncidentRow.fingerprint == fingerprint, IncidentRow.id.in_(same_service)))
                .where(when >= since, when <= until)
                .where(~((IncidentRow.source == exclude[0]) & (IncidentRow.external_id == exclude[1])))
                .order_by(when)
            ).all()
            return [Incident.model_validate(r.payload) for r in rows]

    # ------------------------------------------------------------------ postmortems

    def upsert_postmortem(
        self, postmortem_id: str, incident: Incident, *, owner: str, stage: str, stalled: bool,
        stage_due_at: datetime | None,
    ) -> None:
        incident_id = self.incident_id(incident.source, incident.external_id) or self.record_incident(incident)
        with self.session() as s:
            row = s.get(PostmortemRow, postmortem_id)
            if row is None:
                row = PostmortemRow(id=postmortem_id, incident_id=incident_id)
                s.add(row)
            row.owner, row.stage, row.stalled, row.stage_due_at = owner, stage, stalled, stage_due_at

    def stalled_postmortems(self) -> list[PostmortemRow]:
        with self.session() as s:
            return list(s.scalars(select(PostmortemRow).where(PostmortemRow.stalled.is_(True))
                                  .where(PostmortemRow.stage.in_(("drafting", "in_review")))
                                  .order_by(PostmortemRow.stage_due_at)))

    def overdue_items(self, now: datetime) -> list[ActionItem]:
        with self.session() as s:
            rows = s.scalars(select(ActionItemRow).where(ActionItemRow.status == "open", ActionItemRow.due_at < now)
                             .order_by(ActionItemRow.due_at))
            return [ActionItem.model_validate(r.payload) for r in rows]

    def get_postmortem(self, postmortem_id: str) -> PostmortemRow | None:
        with self.session() as s:
            return s.get(PostmortemRow, postmortem_id)

    def save_document(self, postmortem_id: str, *, markdown: str, html: str, ref: str) -> None:
        with self.session() as s:
            row = s.get(PostmortemRow, postmortem_id)
            if row is None:
                raise KeyError(postmortem_id)
            row.document_markdown, row.document_html, row.document_ref = markdown, html, ref

    # ------------------------------------------------------------------ timeline

    @staticmethod
    def _dedup(event: TimelineEvent) -> str:
        # the same instant written with another UTC offset is the same event
        key = event.model_copy(update={"at": event.at.astimezone(timezone.utc)}).dedup_key()
        return hashlib.sha256("|".join(key).encode()).hexdigest()

    def add_timeline_events(self, incident: Incident, events: list[TimelineEvent], *, notes: bool = False) -> int:
        """Store events once each (dedup by time, kind and text). Returns how many were new."""
        incident_id = self.incident_id(incident.source, incident.external_id) or self.record_incident(incident)
        added = 0
        for e in events:
            added += self._insert_once(
                TimelineEventRow(
                    incident_id=incident_id, dedup=self._dedup(e), at=e.at, source=e.source, kind=e.kind,
                    text=e.text, actor=e.actor, url=e.url, key_moment=e.key_moment, is_note=notes,
                )
            )
        return added

    def timeline(self, incident: Incident, *, notes_only: bool = False) -> list[TimelineEvent]:
        with self.session() as s:
            q = (
                select(TimelineEventRow)
                .join(IncidentRow, IncidentRow.id == TimelineEventRow.incident_id)
                .where(IncidentRow.source == incident.source, IncidentRow.external_id == incident.external_id)
                .order_by(TimelineEventRow.at, TimelineEventRow.id)
            )
            if notes_only:
                q = q.where(TimelineEventRow.is_note.is_(True))
            return [
                TimelineEvent(at=r.at, source=r.source, kind=r.kind, text=r.text, actor=r.actor, url=r.url,
                              key_moment=r.key_moment)
                for r in s.scalars(q)
            ]

    # ------------------------------------------------------------------ action items and reviews

    def upsert_action_item(self, item: ActionItem) -> None:
        with self.session() as s:
            row = s.get(ActionItemRow, item.id)
            if row is None:
                row = ActionItemRow(id=item.id, postmortem_id=item.postmortem_id)
                s.add(row)
            row.title, row.owner, row.priority, row.kind = item.title, item.owner, item.priority, item.kind
            row.due_at, row.tracker, row.ticket_key = item.due_at, item.tracker, item.ticket_key
            row.status, row.completed_at = item.status.value, item.completed_at
            row.verdict = item.verdict.value if item.verdict else None
            row.payload = item.model_dump(mode="json")

    def action_items(self, postmortem_id: str | None = None, *, status: str | None = None) -> list[ActionItem]:
        with self.session() as s:
            q = select(ActionItemRow).order_by(ActionItemRow.id)
            if postmortem_id:
                q = q.where(ActionItemRow.postmortem_id == postmortem_id)
            if status:
                q = q.where(ActionItemRow.status == status)
            return [ActionItem.model_validate(r.payload) for r in s.scalars(q)]

    def action_item_by_ticket(self, tracker: str, ticket_key: str) -> ActionItem | None:
        """The action item tracked by this ticket (webhooks and the reconciliation sweep find items so)."""
        with self.session() as s:
            row = s.scalar(select(ActionItemRow).where(ActionItemRow.tracker == tracker,
                                                       ActionItemRow.ticket_key == ticket_key))
            return ActionItem.model_validate(row.payload) if row else None

    def tracked_items(self) -> list[ActionItem]:
        """Items whose ticket status still matters: a ticket is open, or done and not yet judged effective
        (a reopen then revokes completion)."""
        with self.session() as s:
            q = (select(ActionItemRow)
                 .where(ActionItemRow.ticket_key.is_not(None), ActionItemRow.verdict.is_(None),
                        ActionItemRow.status.in_(("open", "done")))
                 .order_by(ActionItemRow.tracker, ActionItemRow.id))
            return [ActionItem.model_validate(r.payload) for r in s.scalars(q)]

    def record_review(self, postmortem_id: str, review: ReviewRecord) -> bool:
        return self._insert_once(
            ReviewRow(postmortem_id=postmortem_id, round=review.round, reviewer=review.reviewer,
                      decision=review.decision.value, comment=review.comment, at=review.at)
        )

    def reviews(self, postmortem_id: str) -> list[ReviewRow]:
        with self.session() as s:
            return list(s.scalars(select(ReviewRow).where(ReviewRow.postmortem_id == postmortem_id)
                                  .order_by(ReviewRow.round, ReviewRow.id)))

    # ------------------------------------------------------------------ outbox

    def record_notification(self, *, key: str, kind: str, recipient: str, subject: str, body: str, at: datetime,
                            postmortem_id: str, item_id: str | None, channel: str = "log") -> bool:
        """True if this is the first delivery of `key`; False if it was already delivered."""
        return self._insert_once(
            NotificationRow(key=key, kind=kind, recipient=recipient, subject=subject, body=body, at=at,
                            postmortem_id=postmortem_id, item_id=item_id, channel=channel)
        )

    def notifications(self, postmortem_id: str | None = None) -> list[NotificationRow]:
        with self.session() as s:
            q = select(NotificationRow).order_by(NotificationRow.at, NotificationRow.id)
            if postmortem_id:
                # the postmortem's own notifications and its action items' ("<postmortem id>/<item id>"),
                # not those of another postmortem whose id merely starts the same ("…/P1" vs "…/P10")
                q = q.where(or_(NotificationRow.postmortem_id == postmortem_id,
                                NotificationRow.postmortem_id.startswith(postmortem_id + "/", autoescape=True)))
            return list(s.scalars(q))

    # ------------------------------------------------------------------ local tracker

    def ticket_by_marker(self, marker: str) -> TicketRow | None:
        with self.session() as s:
            return s.scalar(select(TicketRow).where(TicketRow.marker == marker))

    def create_ticket(self, *, marker: str, title: str, body: str, assignee: str, priority: str,
                      due_at: datetime) -> TicketRow:
        """Create the ticket for `marker`, or return the one that exists (unique marker)."""
        # Keys follow the highest one ever given (never reused, even after a ticket is deleted). Each failed
        # attempt means another ticket was committed meanwhile, so the number moves on; allow as many
        # attempts as there may be concurrent creators.
        number = cast(func.substr(TicketRow.key, len("LOCAL-") + 1), Integer)
        for _ in range(100):
            with self.session() as s:
                n = (s.scalar(select(func.max(number))) or 0) + 1
            row = TicketRow(key=f"LOCAL-{n}", marker=marker, title=title, body=body, assignee=assignee,
                            priority=priority, due_at=due_at)
            if self._insert_once(row):
                return row
            existing = self.ticket_by_marker(marker)
            if existing:
                return existing
        raise RuntimeError("could not allocate a local ticket key")

    def tickets(self, keys: list[str] | None = None) -> list[TicketRow]:
        with self.session() as s:
            q = select(TicketRow).order_by(TicketRow.created_at, TicketRow.key)
            if keys is not None:
                q = q.where(TicketRow.key.in_(keys))
            return list(s.scalars(q))

    def set_ticket_status(self, key: str, status: str, resolution: str = "") -> TicketRow:
        with self.session() as s:
            row = s.get(TicketRow, key)
            if row is None:
                raise KeyError(key)
            row.status, row.resolution = status, resolution
            return row

    def add_ticket_comment(self, ticket_key: str, body: str, idempotency_key: str) -> bool:
        return self._insert_once(TicketCommentRow(ticket_key=ticket_key, body=body, idempotency_key=idempotency_key))

    def ticket_comments(self, ticket_key: str) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(TicketCommentRow.body).where(TicketCommentRow.ticket_key == ticket_key)
                                  .order_by(TicketCommentRow.id)))

    # ------------------------------------------------------------------ local calendar

    def busy_intervals(self, people: list[str], start: datetime, end: datetime) -> dict[str, list[tuple[datetime, datetime]]]:
        out: dict[str, list[tuple[datetime, datetime]]] = {p: [] for p in people}
        with self.session() as s:
            for m in s.scalars(select(MeetingRow).where(MeetingRow.start < end, MeetingRow.end > start)):
                for p in m.attendees:
                    if p in out:
                        out[p].append((m.start, m.end))
            for b in s.scalars(select(BusyBlockRow).where(BusyBlockRow.person.in_(people),
                                                          BusyBlockRow.start < end, BusyBlockRow.end > start)):
                out[b.person].append((b.start, b.end))
        return out

    def add_busy_block(self, person: str, start: datetime, end: datetime, note: str = "") -> None:
        with self.session() as s:
            s.add(BusyBlockRow(person=person, start=start, end=end, note=note))

    def meeting_by_key(self, idempotency_key: str) -> MeetingRow | None:
        with self.session() as s:
            return s.scalar(select(MeetingRow).where(MeetingRow.idempotency_key == idempotency_key))

    def book_meeting(self, *, idempotency_key: str, title: str, start: datetime, end: datetime,
                     attendees: list[str], require_free: bool = False) -> int | None:
        """Book once per key. With `require_free`, check-and-book is atomic: None when an attendee got
        busy in [start, end) meanwhile (a concurrent lifecycle took the slot), so the caller picks again."""
        with self._booking_lock, self.session() as s:
            existing = s.scalar(select(MeetingRow.id).where(MeetingRow.idempotency_key == idempotency_key))
            if existing is not None:
                return existing
            if s.bind is not None and s.bind.dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(7041)"))  # serialise bookings across workers
            if require_free:
                clash = any(
                    set(m.attendees) & set(attendees)
                    for m in s.scalars(select(MeetingRow).where(MeetingRow.start < end, MeetingRow.end > start))
                ) or s.scalar(select(func.count()).select_from(BusyBlockRow).where(
                    BusyBlockRow.person.in_(attendees), BusyBlockRow.start < end, BusyBlockRow.end > start))
                if clash:
                    return None
            row = MeetingRow(idempotency_key=idempotency_key, title=title, start=start, end=end, attendees=attendees)
            s.add(row)
            s.flush()
            return row.id

    # ------------------------------------------------------------------ webhooks and rate limits

    def record_delivery(self, source: str, delivery_id: str) -> bool:
        """Remember a webhook delivery; False when it was seen before (a replay: acknowledge, don't apply)."""
        return self._insert_once(WebhookDeliveryRow(source=source, delivery_id=delivery_id[:200]))

    def delivery_seen(self, source: str, delivery_id: str) -> bool:
        """Whether `record_delivery` already recorded this delivery (checked before acting, recorded after)."""
        with self.session() as s:
            return s.scalar(select(WebhookDeliveryRow.id).where(
                WebhookDeliveryRow.source == source, WebhookDeliveryRow.delivery_id == delivery_id[:200])) is not None

    def forget_delivery(self, source: str, delivery_id: str) -> None:
        """Drop a recorded delivery (the sweep's evidence that has been used up)."""
        with self.session() as s:
            s.execute(delete(WebhookDeliveryRow).where(WebhookDeliveryRow.source == source,
                                                       WebhookDeliveryRow.delivery_id == delivery_id[:200]))

    def take_rate_slot(self, bucket: str, *, limit: int, window: timedelta, now: datetime | None = None) -> float:
        """Count one call against `limit` calls per `window` in `bucket`, shared by every process on this
        database. Returns 0 when the call may go ahead (and is counted), else the seconds until a slot frees
        (nothing counted): the caller retries then, through its activity's retry, never by sleeping."""
        now = now or datetime.now(timezone.utc)
        with self._booking_lock, self.session() as s:
            if s.bind is not None and s.bind.dialect.name == "postgresql":
                digest = int.from_bytes(hashlib.sha256(bucket.encode()).digest()[:4], "big")
                s.execute(text("SELECT pg_advisory_xact_lock(7042, :k)"), {"k": digest - (1 << 31)})
            s.execute(delete(RateEventRow).where(RateEventRow.bucket == bucket, RateEventRow.at <= now - window))
            recent = list(s.scalars(select(RateEventRow.at).where(RateEventRow.bucket == bucket)
                                    .order_by(RateEventRow.at)))
            if len(recent) >= limit:
                return max((recent[len(recent) - limit] + window - now).total_seconds(), 0.001)
            s.add(RateEventRow(bucket=bucket, at=now))
            return 0.0
