"""What closeloop records about each lifecycle: incidents, postmortems (stage and published document), timeline
events, action items and review votes. Writes that may be retried are idempotent by key."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import CursorResult, delete, func, or_, select, update

from closeloop.models import ActionItem, DefeatedItem, Incident, ReviewRecord, TimelineEvent, Verdict
from closeloop.store.database import Database
from closeloop.store.insights import StoreInsights
from closeloop.store.tables import (
    ActionItemRow,
    IncidentRow,
    IncidentServiceRow,
    ItemRecurrenceRow,
    PostmortemRow,
    ReviewRow,
    TimelineEventRow,
)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class LifecycleRecords:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ incidents

    def record_incident(self, incident: Incident, *, postmortem_required: bool = True) -> int:
        payload = incident.model_dump(mode="json")
        with self.db.session() as s:
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
            existing = set(s.scalars(select(IncidentServiceRow.service)
                                     .where(IncidentServiceRow.incident_id == row.id)))
            if existing - services:  # services the incident no longer lists must stop matching similar_incidents
                s.execute(delete(IncidentServiceRow).where(IncidentServiceRow.incident_id == row.id,
                                                           IncidentServiceRow.service.in_(existing - services)))
            for service in services - existing:
                s.add(IncidentServiceRow(incident_id=row.id, service=service))
            return row.id

    def incident_id(self, source: str, external_id: str) -> int | None:
        with self.db.session() as s:
            return s.scalar(
                select(IncidentRow.id).where(IncidentRow.source == source, IncidentRow.external_id == external_id)
            )

    def get_incident(self, source: str, external_id: str) -> Incident | None:
        with self.db.session() as s:
            row = s.scalar(
                select(IncidentRow).where(IncidentRow.source == source, IncidentRow.external_id == external_id)
            )
            return Incident.model_validate(row.payload) if row else None

    def similar_incidents(
        self, *, services: list[str], fingerprint: str, since: datetime, until: datetime, exclude: tuple[str, str]
    ) -> list[Incident]:
        """Incidents of the same kind (a shared service or the same fingerprint) that started in [since, until]."""
        when = func.coalesce(IncidentRow.started_at, IncidentRow.resolved_at, IncidentRow.recorded_at)
        with self.db.session() as s:
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
        stage_due_at: datetime | None, at: datetime | None = None,
    ) -> None:
        """`at`: the lifecycle's time of the change. A stage left after its due time, or a stall, marks the
        postmortem late; reaching `published` records when (once)."""
        incident_id = self.incident_id(incident.source, incident.external_id) or self.record_incident(incident)
        with self.db.session() as s:
            row = s.get(PostmortemRow, postmortem_id)
            if row is None:
                row = PostmortemRow(id=postmortem_id, incident_id=incident_id, late=False)
                s.add(row)
            elif at is not None and row.stage in ("drafting", "in_review") and row.stage_due_at is not None \
                    and row.stage != stage and _utc(at) > _utc(row.stage_due_at):
                row.late = True
            if stalled:
                row.late = True
            if stage == "published" and row.published_at is None and at is not None:
                row.published_at = at
            row.owner, row.stage, row.stalled, row.stage_due_at = owner, stage, stalled, stage_due_at

    def stalled_postmortems(self) -> list[PostmortemRow]:
        with self.db.session() as s:
            return list(s.scalars(select(PostmortemRow).where(PostmortemRow.stalled.is_(True))
                                  .where(PostmortemRow.stage.in_(("drafting", "in_review")))
                                  .order_by(PostmortemRow.stage_due_at)))

    def get_postmortem(self, postmortem_id: str) -> PostmortemRow | None:
        with self.db.session() as s:
            return s.get(PostmortemRow, postmortem_id)

    def save_document(self, postmortem_id: str, *, markdown: str, html: str, ref: str) -> None:
        with self.db.session() as s:
            row = s.get(PostmortemRow, postmortem_id)
            if row is None:
                raise KeyError(postmortem_id)
            row.document_markdown, row.document_html, row.document_ref = markdown, html, ref
            title = s.scalar(select(IncidentRow.title).where(IncidentRow.id == row.incident_id)) or ""
            StoreInsights(self.db).index_document(s, postmortem_id, title, markdown)

    # ------------------------------------------------------------------ timeline

    @staticmethod
    def _dedup(event: TimelineEvent) -> str:
        # the same instant written with another UTC offset is the same event
        key = event.model_copy(update={"at": event.at.astimezone(UTC)}).dedup_key()
        return hashlib.sha256("|".join(key).encode()).hexdigest()

    def add_timeline_events(self, incident: Incident, events: list[TimelineEvent], *, notes: bool = False) -> int:
        """Store events once each (dedup by time, kind and text). Returns how many were new."""
        incident_id = self.incident_id(incident.source, incident.external_id) or self.record_incident(incident)
        added = 0
        for e in events:
            added += self.db.insert_once(
                TimelineEventRow(
                    incident_id=incident_id, dedup=self._dedup(e), at=e.at, source=e.source, kind=e.kind,
                    text=e.text, actor=e.actor, url=e.url, key_moment=e.key_moment, is_note=notes,
                )
            )
        return added

    def timeline(self, incident: Incident, *, notes_only: bool = False) -> list[TimelineEvent]:
        with self.db.session() as s:
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

    # ------------------------------------------------------------------ action items

    def upsert_action_item(self, item: ActionItem) -> None:
        with self.db.session() as s:
            row = s.get(ActionItemRow, item.id)
            if row is None:
                row = ActionItemRow(id=item.id, postmortem_id=item.postmortem_id)
                s.add(row)
            row.title, row.owner, row.priority, row.kind = item.title, item.owner, item.priority, item.kind
            row.due_at, row.tracker, row.ticket_key = item.due_at, item.tracker, item.ticket_key
            row.status, row.completed_at = item.status.value, item.completed_at
            row.verdict = item.verdict.value if item.verdict else None
            row.payload = item.model_dump(mode="json")
            # the incidents its own effectiveness check found, or the later postmortems that linked to it, if more
            linked = s.scalar(select(func.count()).select_from(ItemRecurrenceRow)
                              .where(ItemRecurrenceRow.item_id == item.id)) or 0
            row.recurrences = max(len(item.recurrences), linked)

    def link_recurrences(self, postmortem_id: str, incident: Incident, *, within: timedelta,
                         at: datetime) -> list[DefeatedItem]:
        """The done action items of earlier postmortems of this incident's kind (the same fingerprint, or a shared
        service) completed in the `within` before the incident started: this incident defeated them. Each is
        linked to `postmortem_id` (once: a retry links nothing twice, and `found_at` stays the first time) and its
        recurrence count raised. Returned oldest completion first, with why each matched."""
        start = _utc(incident.started_at or incident.resolved_at or at)
        with self.db.session() as s:
            this = s.scalar(select(IncidentRow.id).where(IncidentRow.source == incident.source,
                                                         IncidentRow.external_id == incident.external_id))
            services = sorted(set(incident.services))
            same_service = select(IncidentServiceRow.incident_id).where(IncidentServiceRow.service.in_(services))
            same_kind = or_(IncidentRow.id.in_(same_service),
                            (IncidentRow.fingerprint == incident.fingerprint) & (IncidentRow.fingerprint != ""))
            rows = s.execute(
                select(ActionItemRow.id, ActionItemRow.postmortem_id, ActionItemRow.title, ActionItemRow.owner,
                       ActionItemRow.kind, ActionItemRow.completed_at, ActionItemRow.verdict, IncidentRow.id,
                       IncidentRow.fingerprint)
                .join(PostmortemRow, PostmortemRow.id == ActionItemRow.postmortem_id)
                .join(IncidentRow, IncidentRow.id == PostmortemRow.incident_id)
                .where(ActionItemRow.status == "done", ActionItemRow.completed_at.is_not(None),
                       ActionItemRow.completed_at <= start, ActionItemRow.completed_at >= start - within,
                       ActionItemRow.postmortem_id != postmortem_id, same_kind,
                       *([IncidentRow.id != this] if this is not None else []))
                .order_by(ActionItemRow.completed_at, ActionItemRow.id)).all()
            shared: dict[int, list[str]] = {}
            for incident_id, service in s.execute(
                    select(IncidentServiceRow.incident_id, IncidentServiceRow.service)
                    .where(IncidentServiceRow.incident_id.in_({r[7] for r in rows}),
                           IncidentServiceRow.service.in_(services))
                    .order_by(IncidentServiceRow.service)):
                shared.setdefault(incident_id, []).append(service)
            found: list[DefeatedItem] = []
            for item_id, earlier, title, owner, kind, completed_at, verdict, incident_id, fingerprint in rows:
                assert completed_at is not None  # selected so
                matched = ("fingerprint" if incident.fingerprint and fingerprint == incident.fingerprint
                           else "service " + ", ".join(shared.get(incident_id, [])))
                found.append(DefeatedItem(item_id=item_id, postmortem_id=earlier, title=title, owner=owner, kind=kind,
                                          completed_at=_utc(completed_at), matched=matched,
                                          verdict=Verdict(verdict) if verdict else None))
                if s.get(ItemRecurrenceRow, (item_id, postmortem_id)) is None:
                    s.add(ItemRecurrenceRow(item_id=item_id, postmortem_id=postmortem_id, incident=incident.key,
                                            matched=matched, found_at=at))
            s.flush()
            for d in found:
                linked = s.scalar(select(func.count()).select_from(ItemRecurrenceRow)
                                  .where(ItemRecurrenceRow.item_id == d.item_id)) or 0
                s.execute(update(ActionItemRow).where(ActionItemRow.id == d.item_id,
                                                      ActionItemRow.recurrences < linked)
                          .values(recurrences=linked))
            return found

    def recurrences_of(self, item_ids: list[str]) -> dict[str, list[str]]:
        """Item id -> the later postmortems that recurred after it (linked by link_recurrences), oldest first."""
        out: dict[str, list[str]] = {}
        if not item_ids:
            return out
        with self.db.session() as s:
            for item_id, later in s.execute(select(ItemRecurrenceRow.item_id, ItemRecurrenceRow.postmortem_id)
                                            .where(ItemRecurrenceRow.item_id.in_(item_ids))
                                            .order_by(ItemRecurrenceRow.found_at, ItemRecurrenceRow.postmortem_id)):
                out.setdefault(item_id, []).append(later)
        return out

    def action_items(self, postmortem_id: str | None = None, *, status: str | None = None) -> list[ActionItem]:
        with self.db.session() as s:
            q = select(ActionItemRow).order_by(ActionItemRow.id)
            if postmortem_id:
                q = q.where(ActionItemRow.postmortem_id == postmortem_id)
            if status:
                q = q.where(ActionItemRow.status == status)
            return [ActionItem.model_validate(r.payload) for r in s.scalars(q)]

    def action_item_by_ticket(self, tracker: str, ticket_key: str) -> ActionItem | None:
        """The action item tracked by this ticket (webhooks and the reconciliation sweep find items so)."""
        with self.db.session() as s:
            row = s.scalar(select(ActionItemRow).where(ActionItemRow.tracker == tracker,
                                                       ActionItemRow.ticket_key == ticket_key))
            return ActionItem.model_validate(row.payload) if row else None

    def ticket_event(self, item_id: str) -> tuple[datetime, str] | None:
        """The newest ticket status webhook applied to the item: the vendor's time of it and its status (None
        before the first). A delivery older than it, or as old with the same status, is stale."""
        with self.db.session() as s:
            row = s.execute(select(ActionItemRow.ticket_event_at, ActionItemRow.ticket_event_status)
                            .where(ActionItemRow.id == item_id)).one_or_none()
            if row is None or row.ticket_event_at is None:
                return None
            return row.ticket_event_at, row.ticket_event_status or ""

    def record_ticket_event(self, item_id: str, at: datetime, status: str) -> bool:
        """Remember a ticket status webhook applied to the item, unless one as new is known: one conditional
        UPDATE, so concurrent deliveries (several web processes) never move the known time back. False when it
        was not the newest."""
        row = ActionItemRow
        with self.db.session() as s:
            done = s.execute(update(row).where(row.id == item_id)
                             .where(or_(row.ticket_event_at.is_(None), row.ticket_event_at < at))
                             .values(ticket_event_at=at, ticket_event_status=status[:16]))
            return isinstance(done, CursorResult) and done.rowcount == 1

    def tracked_items(self) -> list[ActionItem]:
        """Items whose ticket status still matters: a ticket is open, or done and not yet judged effective
        (a reopen then revokes completion)."""
        with self.db.session() as s:
            q = (select(ActionItemRow)
                 .where(ActionItemRow.ticket_key.is_not(None), ActionItemRow.verdict.is_(None),
                        ActionItemRow.status.in_(("open", "done")))
                 .order_by(ActionItemRow.tracker, ActionItemRow.id))
            return [ActionItem.model_validate(r.payload) for r in s.scalars(q)]

    def overdue_items(self, now: datetime) -> list[ActionItem]:
        with self.db.session() as s:
            rows = s.scalars(select(ActionItemRow).where(ActionItemRow.status == "open", ActionItemRow.due_at < now)
                             .order_by(ActionItemRow.due_at))
            return [ActionItem.model_validate(r.payload) for r in rows]

    # ------------------------------------------------------------------ reviews

    def record_review(self, postmortem_id: str, review: ReviewRecord) -> bool:
        return self.db.insert_once(
            ReviewRow(postmortem_id=postmortem_id, round=review.round, reviewer=review.reviewer,
                      decision=review.decision.value, comment=review.comment, at=review.at)
        )

    def reviews(self, postmortem_id: str) -> list[ReviewRow]:
        with self.db.session() as s:
            return list(s.scalars(select(ReviewRow).where(ReviewRow.postmortem_id == postmortem_id)
                                  .order_by(ReviewRow.round, ReviewRow.id)))
