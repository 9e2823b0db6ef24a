"""The library of published postmortems and the numbers reliability leads look at (closeloop.readmodel.Insights).

Full-text search is the database's own: on SQLite an FTS5 table (`postmortem_fts`: the title and the published
Markdown, porter-stemmed; kept by `index_document` when a document is published; migration 0007), on PostgreSQL
a stored generated column `document_search` = `to_tsvector('english', document_markdown)` with a GIN index,
queried with `websearch_to_tsquery` (migration 0008: ranking and phrase checks read the stored vector instead
of parsing each matching document again). On PostgreSQL the matches are sorted by rank as ids alone, and only
the page's rows are read whole and get a ts_headline snippet. A person's words never reach either query
language raw: for FTS5 each word becomes a quoted string, and websearch_to_tsquery accepts any text. Blocking;
each method is one short transaction."""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, literal_column, or_, select, text
from sqlalchemy.orm import Session

from closeloop.readmodel import (
    AGEING_BUCKETS,
    Effectiveness,
    EffectivenessReport,
    FailingService,
    ItemView,
    Library,
    LibraryFilter,
    LibraryHit,
    LiveCounts,
    Metrics,
    Month,
    PostmortemView,
    RecurredItem,
    RelatedPostmortem,
    Share,
)
from closeloop.store.database import Database
from closeloop.store.tables import ActionItemRow, IncidentRow, IncidentServiceRow, ItemRecurrenceRow, PostmortemRow

P, A, I, S = PostmortemRow, ActionItemRow, IncidentRow, IncidentServiceRow  # noqa: E741
R = ItemRecurrenceRow

CLOSED_STAGES = ("closed", "skipped", "cancelled")
FTS_TABLE = "postmortem_fts"
PG_SEARCH_INDEX = "ix_postmortems_document_search"
PG_SEARCH_COLUMN = "document_search"  # PostgreSQL only, not in the tables (migration 0008)
WORD = re.compile(r"\w[\w'-]*", re.UNICODE)
MAX_WORDS = 12


def fts5_query(words: str) -> str:
    """A person's words as an FTS5 query: each word a quoted string (all must match), nothing else."""
    found = WORD.findall(words)[:MAX_WORDS]
    return " ".join('"' + w.replace('"', "") + '"' for w in found)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _month(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m")


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


class StoreInsights:
    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def _postgres(self) -> bool:
        return self.db.engine.dialect.name == "postgresql"

    # ------------------------------------------------------------------ the search index

    def index_document(self, s: Session, postmortem_id: str, title: str, markdown: str) -> None:
        """Keep the SQLite search table in step with a published document (PostgreSQL indexes the column)."""
        if self._postgres:
            return
        s.execute(text(f"DELETE FROM {FTS_TABLE} WHERE postmortem_id = :id"), {"id": postmortem_id})
        s.execute(text(f"INSERT INTO {FTS_TABLE} (postmortem_id, title, body) VALUES (:id, :title, :body)"),
                  {"id": postmortem_id, "title": title, "body": markdown})

    # ------------------------------------------------------------------ the library

    def library(self, filters: LibraryFilter) -> Library:
        conditions: list[Any] = [P.document_markdown.is_not(None)]
        if filters.owners is not None:
            conditions.append(P.owner.in_(filters.owners))
        if filters.severity:
            conditions.append(I.severity == filters.severity)
        if filters.service:
            conditions.append(P.incident_id.in_(select(S.incident_id).where(S.service == filters.service)))
        if filters.since:
            conditions.append(func.coalesce(P.published_at, P.updated_at) >= filters.since)
        if filters.until:
            conditions.append(func.coalesce(P.published_at, P.updated_at) < filters.until)
        query = filters.query.strip()
        rank: Any = None
        snippet: Any = None
        if query and self._postgres:
            vector: Any = literal_column(f"{P.__tablename__}.{PG_SEARCH_COLUMN}")
            tsquery = func.websearch_to_tsquery(text("'english'"), query)
            conditions.append(vector.op("@@")(tsquery))
            rank = func.ts_rank(vector, tsquery)
            snippet = func.ts_headline(text("'english'"), func.coalesce(P.document_markdown, ""), tsquery,
                                       "StartSel=⟦, StopSel=⟧, MaxWords=30, MinWords=12, MaxFragments=1")
        elif query:
            match = fts5_query(query)
            if not match:
                return Library(hits=[], total=0)
            ids = select(text("postmortem_id")).select_from(text(FTS_TABLE)).where(
                text(f"{FTS_TABLE} MATCH :match")).scalar_subquery()
            conditions.append(P.id.in_(ids))
        with self.db.session() as s:
            if rank is not None:
                # The planner costs `@@` on the stored vector as one cheap operator and so reads the whole table
                # for a common word, detoasting every vector; the GIN index answers a word without reading any
                # (a phrase: only its candidates'). Measured at 10,000 postmortems: 50 ms -> 12 ms for the count.
                s.execute(text("SET LOCAL enable_seqscan = off"))
            base = select(P.id).join(I, I.id == P.incident_id).where(and_(*conditions))
            params = {"match": fts5_query(query)} if query and not self._postgres else {}
            total = int(s.scalar(select(func.count()).select_from(base.subquery()), params) or 0)
            columns: list[Any] = [P.id, I.title, I.severity, P.owner, P.stage, P.stalled, P.stage_due_at,
                                  I.resolved_at, P.updated_at, P.document_ref, P.incident_id, P.published_at]
            if snippet is not None:
                columns.append(snippet.label("snippet"))
            published = func.coalesce(P.published_at, P.updated_at)
            if rank is not None:
                # rank the matches by id alone (a narrow sort), then read the page's rows and their snippets
                page = (select(P.id.label("id"), rank.label("rank"), published.label("published"))
                        .join(I, I.id == P.incident_id).where(and_(*conditions))
                        .order_by(rank.desc(), published.desc(), P.id)
                        .limit(filters.limit).offset(filters.offset).subquery())
                rows_q = (select(*columns).join(I, I.id == P.incident_id).join(page, page.c.id == P.id)
                          .order_by(page.c.rank.desc(), page.c.published.desc(), P.id))
            else:
                rows_q = (select(*columns).join(I, I.id == P.incident_id).where(and_(*conditions))
                          .order_by(published.desc(), P.id).limit(filters.limit).offset(filters.offset))
            rows = s.execute(rows_q, params).all()
            services = self._services(s, [r.incident_id for r in rows])
            snippets: dict[str, str] = {}
            if query and not self._postgres and rows:
                found = s.execute(text(f"SELECT postmortem_id, snippet({FTS_TABLE}, 2, '', '', '…', 24) FROM "
                                       f"{FTS_TABLE} WHERE {FTS_TABLE} MATCH :match"),
                                  {"match": fts5_query(query)}).all()
                snippets = {pid: snip for pid, snip in found}
        hits = []
        for r in rows:
            view = PostmortemView(id=r.id, title=r.title, severity=r.severity, services=services.get(r.incident_id, []),
                                  owner=r.owner, stage=r.stage, stalled=r.stalled, stage_due_at=r.stage_due_at,
                                  resolved_at=r.resolved_at, updated_at=r.updated_at, document_ref=r.document_ref)
            text_snippet = getattr(r, "snippet", None) or snippets.get(r.id, "")
            hits.append(LibraryHit(postmortem=view, published_at=_aware(r.published_at),
                                   snippet=" ".join(str(text_snippet).replace("⟦", "").replace("⟧", "")
                                                    .split())[:400]))
        return Library(hits=hits, total=total)

    def related(self, postmortem_id: str, limit: int = 10) -> list[RelatedPostmortem]:
        """Earlier postmortems of incidents of the same kind as this one's (a shared service or the same
        fingerprint), newest first, each with its action items."""
        when = func.coalesce(I.resolved_at, I.recorded_at)
        with self.db.session() as s:
            this = s.execute(select(I.id, I.fingerprint, when.label("when")).join(P, P.incident_id == I.id)
                             .where(P.id == postmortem_id)).first()
            if this is None:
                return []
            services = select(S.service).where(S.incident_id == this.id)
            same_kind = or_(I.id.in_(select(S.incident_id).where(S.service.in_(services))),
                            and_(I.fingerprint == this.fingerprint, I.fingerprint != ""))
            rows = s.execute(select(P.id, I.title, I.severity, P.owner, P.stage, P.stalled, P.stage_due_at,
                                    I.resolved_at, P.updated_at, P.document_ref, P.incident_id)
                             .join(I, I.id == P.incident_id)
                             .where(P.id != postmortem_id, I.id != this.id, same_kind, when <= this.when)
                             .order_by(when.desc(), P.id).limit(limit)).all()
            found = self._services(s, [r.incident_id for r in rows])
            items: dict[str, list[ItemView]] = defaultdict(list)
            if rows:
                for a in s.execute(select(A.id, A.postmortem_id, A.title, A.owner, A.priority, A.kind, A.due_at,
                                          A.status, A.completed_at, A.verdict, A.ticket_key)
                                   .where(A.postmortem_id.in_([r.id for r in rows])).order_by(A.id)):
                    items[a.postmortem_id].append(ItemView(
                        id=a.id, postmortem_id=a.postmortem_id, title=a.title, owner=a.owner, priority=a.priority,
                        kind=a.kind, due_at=a.due_at, status=a.status, completed_at=a.completed_at,
                        verdict=a.verdict, ticket_key=a.ticket_key))
                recurred = self._recurred(s, [i.id for found_items in items.values() for i in found_items])
                for found_items in items.values():
                    for i in found_items:
                        i.recurred_in = recurred.get(i.id, [])
        return [RelatedPostmortem(postmortem=PostmortemView(
                    id=r.id, title=r.title, severity=r.severity, services=found.get(r.incident_id, []), owner=r.owner,
                    stage=r.stage, stalled=r.stalled, stage_due_at=r.stage_due_at, resolved_at=r.resolved_at,
                    updated_at=r.updated_at, document_ref=r.document_ref), items=items.get(r.id, []))
                for r in rows]

    @staticmethod
    def _recurred(s: Session, item_ids: list[str]) -> dict[str, list[str]]:
        """Item id -> the later postmortems its kind of incident recurred in (item_recurrences), oldest first."""
        out: dict[str, list[str]] = defaultdict(list)
        if item_ids:
            for item_id, later in s.execute(select(R.item_id, R.postmortem_id).where(R.item_id.in_(item_ids))
                                            .order_by(R.found_at, R.postmortem_id)):
                out[item_id].append(later)
        return out

    @staticmethod
    def _services(s: Session, incident_ids: list[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = defaultdict(list)
        if incident_ids:
            for incident_id, service in s.execute(select(S.incident_id, S.service)
                                                  .where(S.incident_id.in_(set(incident_ids)))
                                                  .order_by(S.service)):
                out[incident_id].append(service)
        return out

    # ------------------------------------------------------------------ the numbers

    def metrics(self, owners: list[str] | None, now: datetime, months: int = 12) -> Metrics:
        now = now.astimezone(UTC)
        year, mon = now.year, now.month
        month_keys: list[str] = []
        for _ in range(months):  # this month and the months before it, oldest first
            month_keys.insert(0, f"{year:04d}-{mon:02d}")
            year, mon = (year - 1, 12) if mon == 1 else (year, mon - 1)
        start = datetime.strptime(month_keys[0], "%Y-%m").replace(tzinfo=UTC)  # the window: whole months
        pm_scope: list[Any] = [P.published_at.is_not(None), P.published_at >= start]
        item_scope: list[Any] = []
        if owners is not None:
            pm_scope.append(P.owner.in_(owners))
            item_scope.append(A.owner.in_(owners))
        with self.db.session() as s:
            published = s.execute(select(P.published_at, P.late, I.severity, I.resolved_at)
                                  .join(I, I.id == P.incident_id).where(and_(*pm_scope))).all()
            done = s.execute(select(A.completed_at, A.due_at, A.kind, A.verdict, A.recurrences, P.incident_id)
                             .join(P, P.id == A.postmortem_id)
                             .where(and_(A.status == "done", A.completed_at.is_not(None), A.completed_at >= start,
                                         *item_scope))).all()
            services = self._services(s, list({r.incident_id for r in done}))
            ageing = self._ageing(s, item_scope, now)
        by_severity: dict[str, Share] = defaultdict(Share)
        hours_by_severity: dict[str, list[float]] = defaultdict(list)
        hours: list[float] = []
        by_month: dict[str, dict[str, Any]] = {m: {"published": Share(), "items": Share(), "hours": [],
                                                   "eff": Effectiveness()} for m in month_keys}
        for r in published:
            at = _aware(r.published_at)
            assert at is not None
            share = by_severity[r.severity]
            share.total += 1
            share.on_time += 0 if r.late else 1
            resolved = _aware(r.resolved_at)
            if resolved is not None and at >= resolved:
                h = (at - resolved).total_seconds() / 3600
                hours.append(h)
                hours_by_severity[r.severity].append(h)
            month = by_month.get(_month(at))
            if month is not None:
                month["published"].total += 1
                month["published"].on_time += 0 if r.late else 1
                if resolved is not None and at >= resolved:
                    month["hours"].append((at - resolved).total_seconds() / 3600)
        items_on_time = Share()
        by_service: dict[str, Effectiveness] = defaultdict(Effectiveness)
        by_kind: dict[str, Effectiveness] = defaultdict(Effectiveness)
        for d in done:
            completed, due = _aware(d.completed_at), _aware(d.due_at)
            assert completed is not None and due is not None
            on_time = completed <= due
            items_on_time.total += 1
            items_on_time.on_time += on_time
            month = by_month.get(_month(completed))
            if month is not None:
                month["items"].total += 1
                month["items"].on_time += on_time
            targets = [by_kind[d.kind], *(by_service[svc] for svc in services.get(d.incident_id, []) or ["(none)"])]
            if month is not None:
                targets.append(month["eff"])
            for eff in targets:
                if d.verdict == "effective":
                    eff.effective += 1
                elif d.verdict == "ineffective":
                    eff.ineffective += 1
                elif d.verdict == "unknown":
                    eff.unknown += 1
                eff.recurrences += int(d.recurrences or 0)
        return Metrics(
            published_by_severity=dict(sorted(by_severity.items())),
            median_hours_to_publish=_median(hours),
            hours_to_publish_by_severity={k: m for k, v in sorted(hours_by_severity.items())
                                          if (m := _median(v)) is not None},
            items_on_time=items_on_time, overdue_by_age=ageing,
            effectiveness_by_service=dict(sorted(by_service.items())),
            effectiveness_by_kind=dict(sorted(by_kind.items())),
            months=[Month(month=m, published=v["published"], items_done=v["items"],
                          median_hours_to_publish=_median(v["hours"]), effectiveness=v["eff"])
                    for m, v in by_month.items()])

    # ------------------------------------------------------------------ the gauges

    def live_counts(self, now: datetime) -> LiveCounts:
        """Open lifecycles by stage, stalled postmortems and overdue action items (three index-backed counts)."""
        with self.db.session() as s:
            stages = {row[0]: row[1] for row in s.execute(select(P.stage, func.count())
                                                          .where(P.stage.not_in(CLOSED_STAGES)).group_by(P.stage))}
            stalled = s.scalar(select(func.count()).select_from(P).where(P.stalled.is_(True),
                                                                       P.stage.not_in(CLOSED_STAGES))) or 0
            overdue = s.scalar(select(func.count()).select_from(A).where(A.status == "open", A.due_at < now)) or 0
        return LiveCounts(stages={k: int(v) for k, v in stages.items()}, stalled=int(stalled), overdue=int(overdue))

    # ------------------------------------------------------------------ the effectiveness review

    def effectiveness(self, since: datetime, until: datetime, failing_after: int = 2) -> EffectivenessReport:
        """The action items completed in [since, until) and their verdicts, by service and by kind; the
        recurrences found in the period (item_recurrences); the items overdue at `until`, by age; and the services
        with at least `failing_after` incidents that started in the period."""
        since, until = since.astimezone(UTC), until.astimezone(UTC)
        report = EffectivenessReport(since=since, until=until)
        when = func.coalesce(I.started_at, I.resolved_at, I.recorded_at)
        with self.db.session() as s:
            done = s.execute(select(A.kind, A.verdict, A.recurrences, P.incident_id)
                             .join(P, P.id == A.postmortem_id)
                             .where(A.status == "done", A.completed_at >= since, A.completed_at < until)).all()
            services = self._services(s, list({r.incident_id for r in done}))
            ageing = self._ageing(s, [], until)
            incidents = s.execute(select(S.service, I.id, P.id.label("postmortem_id"), when.label("when"))
                                  .join(I, I.id == S.incident_id).outerjoin(P, P.incident_id == I.id)
                                  .where(when >= since, when < until)
                                  .order_by(S.service, when.desc(), I.id)).all()
            links = s.execute(select(R.item_id, R.postmortem_id).where(R.found_at >= since, R.found_at < until)
                              .order_by(R.found_at, R.item_id, R.postmortem_id)).all()
            recurred_items: dict[str, list[str]] = {}
            for item_id, later in links:
                recurred_items.setdefault(item_id, []).append(later)
            item_rows = s.execute(select(A.id, A.postmortem_id, A.title, A.owner, A.priority, A.kind, A.due_at,
                                         A.status, A.completed_at, A.verdict, A.ticket_key, P.incident_id)
                                  .join(P, P.id == A.postmortem_id)
                                  .where(A.id.in_(list(recurred_items)))).all() if recurred_items else []
            item_services = self._services(s, list({r.incident_id for r in item_rows}))
        by_service: dict[str, Effectiveness] = defaultdict(Effectiveness)
        by_kind: dict[str, Effectiveness] = defaultdict(Effectiveness)
        for d in done:
            report.items_done += 1
            targets = [report.verdicts, by_kind[d.kind],
                       *(by_service[svc] for svc in services.get(d.incident_id, []) or ["(none)"])]
            for eff in targets:
                if d.verdict in ("effective", "ineffective", "unknown"):
                    setattr(eff, d.verdict, getattr(eff, d.verdict) + 1)
                eff.recurrences += int(d.recurrences or 0)
            report.awaiting_verdict += d.verdict is None
        report.by_service, report.by_kind = dict(sorted(by_service.items())), dict(sorted(by_kind.items()))
        report.overdue_by_age, report.overdue_items = ageing, sum(ageing.values())
        per_service: dict[str, list[Any]] = defaultdict(list)
        for r in incidents:
            per_service[r.service].append(r)
        failing = []
        for service, rows in per_service.items():
            distinct = list(dict.fromkeys(r.id for r in rows))
            if len(distinct) < failing_after:
                continue
            eff = by_service.get(service, Effectiveness())
            failing.append(FailingService(
                service=service, incidents=len(distinct),
                postmortems=list(dict.fromkeys(r.postmortem_id for r in rows if r.postmortem_id))[:10],
                ineffective_items=eff.ineffective, recurrences=eff.recurrences))
        report.failing_services = sorted(failing, key=lambda f: (-f.incidents, f.service))
        order = list(recurred_items)
        report.recurred = [RecurredItem(item=ItemView(
            id=r.id, postmortem_id=r.postmortem_id, title=r.title, owner=r.owner, priority=r.priority, kind=r.kind,
            due_at=r.due_at, status=r.status, completed_at=r.completed_at, verdict=r.verdict, ticket_key=r.ticket_key,
            services=item_services.get(r.incident_id, []), recurred_in=recurred_items[r.id]),
            recurred_in=recurred_items[r.id]) for r in sorted(item_rows, key=lambda r: order.index(r.id))]
        return report

    @staticmethod
    def _ageing(s: Session, item_scope: list[Any], now: datetime) -> dict[str, int]:
        cases: list[Any] = []
        for _label, lo, hi in AGEING_BUCKETS:
            cond = [A.due_at < now - timedelta(days=lo)]
            if hi is not None:
                cond.append(A.due_at >= now - timedelta(days=hi))
            cases.append(func.sum(case((and_(*cond), 1), else_=0)).label(f"b{len(cases)}"))
        row = s.execute(select(*cases).where(and_(A.status == "open", A.due_at < now, *item_scope))).one()
        return {label: int(row[n] or 0) for n, (label, _, _) in enumerate(AGEING_BUCKETS)}
