"""What the web app's pages read and write (closeloop.readmodel.WebViews): the dashboard's lists and counts, a
person's work, a postmortem with its items and notifications, the audit log, the draft editor's autosaves and
the single use of an action link. The counts are SQL aggregates (GROUP BY, CASE), never rows loaded and counted
here; the indexes they use come with migration 0006. Each method is one short transaction. Blocking."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Integer, Row, Select, and_, any_, bindparam, case, delete, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from closeloop.readmodel import (
    AGEING_BUCKETS,
    AuditEntry,
    Counts,
    Dashboard,
    DashboardFilter,
    ItemView,
    MyWork,
    NotificationView,
    PostmortemView,
)
from closeloop.store.database import Database
from closeloop.store.tables import (
    ActionItemRow,
    ActionLinkUseRow,
    ChannelDeliveryRow,
    DraftAutosaveRow,
    IncidentRow,
    IncidentServiceRow,
    ItemRecurrenceRow,
    NotificationRow,
    PostmortemRow,
    WebAuditRow,
)

STALLING_STAGES = ("drafting", "in_review")  # the stages a postmortem can stall in (waiting for people)
IN_REVIEW_LIMIT = 200

AnySelect = Select[*tuple[Any, ...]]
Q = TypeVar("Q", bound=AnySelect)

P, A, I, S = PostmortemRow, ActionItemRow, IncidentRow, IncidentServiceRow  # noqa: E741

_POSTMORTEM_COLUMNS = (P.id, I.title, I.severity, P.owner, P.stage, P.stalled, P.stage_due_at, I.resolved_at,
                       P.updated_at, P.document_ref, P.incident_id)
_ITEM_COLUMNS = (A.id, A.postmortem_id, A.title, A.owner, A.priority, A.kind, A.due_at, A.status, A.completed_at,
                 A.verdict, A.ticket_key, A.payload["ticket_url"].as_string().label("ticket_url"), I.severity,
                 P.incident_id)


def _stalled(now: datetime) -> ColumnElement[bool]:
    return and_(P.stage.in_(STALLING_STAGES), or_(P.stalled.is_(True), P.stage_due_at < now))


def _overdue(now: datetime) -> ColumnElement[bool]:
    return and_(A.status == "open", A.due_at < now)


def _incident_scope(filters: DashboardFilter, incidents: bool) -> list[ColumnElement[bool]]:
    """The service and severity filters, on the postmortem's incident (P joined; I too when `incidents`)."""
    where: list[ColumnElement[bool]] = []
    if filters.service is not None:
        where.append(P.incident_id.in_(select(S.incident_id).where(S.service == filters.service)))
    if filters.severity is not None:
        where.append(I.severity == filters.severity if incidents
                     else P.incident_id.in_(select(I.id).where(I.severity == filters.severity)))
    return where


def _postmortems(q: Q, filters: DashboardFilter, *, incidents: bool = False) -> Q:
    """`q` (from postmortems; incidents joined when `incidents`) narrowed to the filters' postmortems."""
    if filters.owners is not None:
        q = q.where(P.owner.in_(filters.owners))
    return q.where(*_incident_scope(filters, incidents))


def _items(q: Q, filters: DashboardFilter, *, joined: bool = False, incidents: bool = False) -> Q:
    """`q` (from action_items; postmortems joined when `joined`, incidents too when `incidents`) narrowed to the
    filters' items."""
    if filters.owners is not None:
        q = q.where(A.owner.in_(filters.owners))
    scope = _incident_scope(filters, incidents)
    if scope and not joined:
        q = q.join(P, P.id == A.postmortem_id)
    return q.where(*scope)


def _postmortem_view(r: Row[Any], services: dict[int, list[str]]) -> PostmortemView:
    return PostmortemView(id=r.id, title=r.title, severity=r.severity, services=services.get(r.incident_id, []),
                          owner=r.owner, stage=r.stage, stalled=bool(r.stalled), stage_due_at=r.stage_due_at,
                          resolved_at=r.resolved_at, updated_at=r.updated_at, document_ref=r.document_ref)


def _item_view(r: Row[Any], services: dict[int, list[str]]) -> ItemView:
    return ItemView(id=r.id, postmortem_id=r.postmortem_id, title=r.title, owner=r.owner, priority=r.priority,
                    kind=r.kind, due_at=r.due_at, status=r.status, completed_at=r.completed_at, verdict=r.verdict,
                    ticket_key=r.ticket_key, ticket_url=r.ticket_url, severity=r.severity,
                    services=services.get(r.incident_id, []))


def _select_postmortems() -> AnySelect:
    return select(*_POSTMORTEM_COLUMNS).join(I, I.id == P.incident_id)


def _select_items() -> AnySelect:
    return select(*_ITEM_COLUMNS).join(P, P.id == A.postmortem_id).join(I, I.id == P.incident_id)


def _services(s: Session, rows: Iterable[Row[Any]]) -> dict[int, list[str]]:
    """The services of these rows' incidents, sorted, by incident id. PostgreSQL: one array parameter (`= ANY`),
    not a parameter per id for the driver to splice into the statement; SQLite: IN lists of at most 1,000."""
    ids = sorted({r.incident_id for r in rows})
    out: dict[int, list[str]] = {}
    if s.get_bind().dialect.name == "postgresql":
        batches = [S.incident_id == any_(bindparam("ids", ids, type_=ARRAY(Integer)))] if ids else []
    else:
        batches = [S.incident_id.in_(ids[start:start + 1000]) for start in range(0, len(ids), 1000)]
    for where in batches:
        for incident_id, service in s.execute(select(S.incident_id, S.service).where(where)
                                              .order_by(S.incident_id, S.service)):
            out.setdefault(incident_id, []).append(service)
    return out


def _most_overdue_first(due: Any) -> tuple[Any, ...]:
    return (due.is_(None), due)  # no due time (stalled by flag only) last; portable NULLS LAST


def _item_number(item_id: str) -> tuple[int, str]:
    """`…/item-12` sorts after `…/item-2`; anything else after every numbered item."""
    tail = item_id.rpartition("/")[2].removeprefix("item-")
    return (int(tail), item_id) if tail.isdigit() else (1 << 62, item_id)


def _merge(counts: dict[str, Counts], rows: Iterable[tuple[str, int]], field: str) -> None:
    for key, n in rows:
        setattr(counts.setdefault(key, Counts()), field, int(n))


def _clip(value: str, n: int) -> str:
    return value[:n]


class Views:
    """closeloop.readmodel.WebViews on the store's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ dashboard

    def dashboard(self, filters: DashboardFilter, now: datetime) -> Dashboard:
        """Eight statements in one transaction: the two lists, their services, the stalled postmortems and the
        overdue items grouped by (owner, severity) (the overdue ones with their ageing buckets as columns), each
        grouped by service, and the done items' verdicts. by_owner, by_severity, the totals and the ageing are
        sums over the (owner, severity) groups (at most owners x severities rows), never over loaded items."""
        stalled, overdue = _stalled(now), _overdue(now)
        by_owner: dict[str, Counts] = {}
        by_severity: dict[str, Counts] = {}
        by_service: dict[str, Counts] = {}
        ageing = dict.fromkeys((label for label, _, _ in AGEING_BUCKETS), 0)
        # overdue by (lo, hi] days is due_at in [now - hi, now - lo)
        buckets = [func.count(case((and_(*([A.due_at < now - timedelta(days=lo)] if lo else []),
                                        *([A.due_at >= now - timedelta(days=hi)] if hi is not None else [])), 1)))
                   for _, lo, hi in AGEING_BUCKETS]
        with self.db.session() as s:
            # the lists: at most `limit` rows each, the most overdue first
            pm_rows = s.execute(_postmortems(_select_postmortems().where(stalled), filters, incidents=True)
                                .order_by(*_most_overdue_first(P.stage_due_at), P.id).limit(filters.limit)).all()
            item_rows = s.execute(_items(_select_items().where(overdue), filters, joined=True, incidents=True)
                                  .order_by(A.due_at, A.id).limit(filters.limit)).all()
            services = _services(s, [*pm_rows, *item_rows])

            # stalled postmortems by owner and severity, and by service
            for owner, severity, n in s.execute(
                    _postmortems(select(P.owner, I.severity, func.count()).select_from(P)
                                 .join(I, I.id == P.incident_id).where(stalled), filters, incidents=True)
                    .group_by(P.owner, I.severity)):
                by_owner.setdefault(owner, Counts()).stalled += n
                by_severity.setdefault(severity, Counts()).stalled += n
            _merge(by_service, s.execute(_postmortems(select(S.service, func.count()).select_from(P)
                                                      .join(S, S.incident_id == P.incident_id).where(stalled),
                                                      filters).group_by(S.service)), "stalled")

            # overdue items by owner and severity (and how long), and by service
            for owner, severity, n, *aged in s.execute(
                    _items(select(A.owner, I.severity, func.count(), *buckets).select_from(A)
                           .join(P, P.id == A.postmortem_id).join(I, I.id == P.incident_id).where(overdue),
                           filters, joined=True, incidents=True)
                    .group_by(A.owner, I.severity)):
                by_owner.setdefault(owner, Counts()).overdue += n
                by_severity.setdefault(severity, Counts()).overdue += n
                for label, k in zip(ageing, aged, strict=True):
                    ageing[label] += k
            # (counted per postmortem first: a third as many rows to join to the incidents' services)
            per_postmortem = _items(select(A.postmortem_id, func.count().label("n")).where(overdue), filters) \
                .group_by(A.postmortem_id).subquery()
            _merge(by_service, s.execute(select(S.service, func.sum(per_postmortem.c.n)).select_from(per_postmortem)
                                         .join(P, P.id == per_postmortem.c.postmortem_id)
                                         .join(S, S.incident_id == P.incident_id)
                                         .group_by(S.service)), "overdue")

            # what was done, and whether it worked
            done = s.execute(_items(select(func.count(), func.count(case((A.verdict == "effective", 1))),
                                           func.count(case((A.verdict == "ineffective", 1))))
                                    .where(A.status == "done"), filters)).one()

            stalled_list = [_postmortem_view(r, services) for r in pm_rows]
            overdue_list = [_item_view(r, services) for r in item_rows]
        return Dashboard(
            stalled=stalled_list, stalled_total=sum(c.stalled for c in by_owner.values()),
            overdue=overdue_list, overdue_total=sum(c.overdue for c in by_owner.values()),
            by_owner=by_owner, by_severity=by_severity, by_service=by_service, ageing=ageing,
            closed_items=int(done[0]), verified_effective=int(done[1]), verified_ineffective=int(done[2]),
        )

    # ------------------------------------------------------------------ a person's work

    def my_work(self, person: str, now: datetime) -> MyWork:
        with self.db.session() as s:
            drafts = s.execute(_select_postmortems().where(P.owner == person, P.stage == "drafting")
                               .order_by(*_most_overdue_first(P.stage_due_at), P.id)).all()
            items = s.execute(_select_items().where(A.owner == person, A.status == "open")
                              .order_by(A.due_at, A.id)).all()
            verdicts = s.execute(_select_items().where(A.owner == person, A.status == "done", A.verdict.is_(None))
                                 .order_by(A.completed_at, A.id)).all()
            in_review = s.execute(_select_postmortems().where(P.stage == "in_review")
                                  .order_by(*_most_overdue_first(P.stage_due_at), P.id).limit(IN_REVIEW_LIMIT)).all()
            services = _services(s, [*drafts, *items, *verdicts, *in_review])
        return MyWork(drafts=[_postmortem_view(r, services) for r in drafts],
                      items=[_item_view(r, services) for r in items],
                      verdicts=[_item_view(r, services) for r in verdicts],
                      in_review=[_postmortem_view(r, services) for r in in_review])

    # ------------------------------------------------------------------ one postmortem

    def postmortem(self, postmortem_id: str) -> PostmortemView | None:
        with self.db.session() as s:
            row = s.execute(_select_postmortems().where(P.id == postmortem_id)).one_or_none()
            return _postmortem_view(row, _services(s, [row])) if row is not None else None

    def items(self, postmortem_id: str) -> list[ItemView]:
        """The postmortem's action items by number (item-2 before item-10)."""
        with self.db.session() as s:
            rows = s.execute(_select_items().where(A.postmortem_id == postmortem_id)).all()
            services = _services(s, rows)
            recurred: dict[str, list[str]] = {}
            for item_id, later in s.execute(select(ItemRecurrenceRow.item_id, ItemRecurrenceRow.postmortem_id)
                                            .where(ItemRecurrenceRow.item_id.in_([r.id for r in rows]))
                                            .order_by(ItemRecurrenceRow.found_at, ItemRecurrenceRow.postmortem_id)):
                recurred.setdefault(item_id, []).append(later)
        return [_item_view(r, services).model_copy(update={"recurred_in": recurred.get(r.id, [])})
                for r in sorted(rows, key=lambda r: _item_number(r.id))]

    def notifications(self, postmortem_id: str, limit: int = 200) -> list[NotificationView]:
        """The postmortem's notifications and its items', newest first, each with what the channels did."""
        n = NotificationRow
        with self.db.session() as s:
            rows = s.execute(
                select(n.key, n.kind, n.recipient, n.subject, n.at, n.sent_at, n.channel, n.item_id)
                # its items' are "<postmortem id>/<item id>" (LocalAdapterStorage.notifications), not "…/P10"'s
                .where(or_(n.postmortem_id == postmortem_id,
                           n.postmortem_id.startswith(postmortem_id + "/", autoescape=True)))
                .order_by(n.at.desc(), n.id.desc()).limit(limit)).all()
            deliveries: dict[str, list[str]] = {}
            keys = [r.key for r in rows]
            for start in range(0, len(keys), 500):
                for d in s.execute(select(ChannelDeliveryRow.key, ChannelDeliveryRow.channel,
                                          ChannelDeliveryRow.status, ChannelDeliveryRow.error)
                                   .where(ChannelDeliveryRow.key.in_(keys[start:start + 500]))
                                   .order_by(ChannelDeliveryRow.id)):
                    said = f"{d.channel}: {d.status}" + (f" ({d.error})" if d.error else "")
                    deliveries.setdefault(d.key, []).append(said)
        return [NotificationView(kind=r.kind, recipient=r.recipient, subject=r.subject, at=r.at, sent_at=r.sent_at,
                                 channel=r.channel, item_id=r.item_id, deliveries=deliveries.get(r.key, []))
                for r in rows]

    # ------------------------------------------------------------------ audit log

    def record_audit(self, entry: AuditEntry) -> None:
        with self.db.session() as s:
            s.add(WebAuditRow(at=entry.at, person=_clip(entry.person, 200), action=_clip(entry.action, 64),
                              target=_clip(entry.target, 400), via=_clip(entry.via, 32),
                              address=_clip(entry.address, 100), outcome=_clip(entry.outcome, 500),
                              detail=entry.detail))

    def audit(self, target: str, limit: int = 200) -> list[AuditEntry]:
        """What was done to `target` ("" for sign-ins), newest first."""
        with self.db.session() as s:
            rows = s.scalars(select(WebAuditRow).where(WebAuditRow.target == target)
                             .order_by(WebAuditRow.at.desc(), WebAuditRow.id.desc()).limit(limit)).all()
            return [AuditEntry(at=r.at, person=r.person, action=r.action, target=r.target, via=r.via,
                               address=r.address, outcome=r.outcome, detail=r.detail) for r in rows]

    # ------------------------------------------------------------------ draft autosaves

    def save_draft(self, postmortem_id: str, person: str, data: dict[str, Any], at: datetime) -> None:
        """Keep `data` as the person's latest autosave of the draft (one upsert: concurrent saves never fail)."""
        insert = pg_insert if self.db.engine.dialect.name == "postgresql" else sqlite_insert
        stmt = insert(DraftAutosaveRow).values(postmortem_id=postmortem_id, person=person, data=data, saved_at=at)
        stmt = stmt.on_conflict_do_update(index_elements=["postmortem_id", "person"],
                                          set_={"data": stmt.excluded.data, "saved_at": stmt.excluded.saved_at})
        with self.db.session() as s:
            s.execute(stmt)

    def saved_draft(self, postmortem_id: str, person: str) -> tuple[dict[str, Any], datetime] | None:
        with self.db.session() as s:
            row = s.get(DraftAutosaveRow, (postmortem_id, person))
            return (row.data, row.saved_at) if row is not None else None

    def discard_draft(self, postmortem_id: str, person: str) -> None:
        with self.db.session() as s:
            s.execute(delete(DraftAutosaveRow).where(DraftAutosaveRow.postmortem_id == postmortem_id,
                                                     DraftAutosaveRow.person == person))

    # ------------------------------------------------------------------ action links

    def use_link(self, token_id: str, expires_at: datetime) -> bool:
        """True the first time `token_id` is used, False ever after (the primary key decides, so two requests
        racing with one link get one True between them, on SQLite and PostgreSQL alike)."""
        if not token_id or len(token_id) > 64:
            raise ValueError("an action link's token id is 1 to 64 characters")
        return self.db.insert_once(ActionLinkUseRow(token_id=token_id, used_at=datetime.now(UTC),
                                                    expires_at=expires_at))
