"""The durable inbox: a webhook or API call is answered once its incident is committed here, unique on
(source, external id), so "new" or "duplicate" is exact under concurrency on SQLite and PostgreSQL alike. The
web app's forwarder claims pending rows, starts their lifecycles and marks them forwarded (or refused, or due
again later). Claims are leases: a row is claimed by one statement that re-checks it is still pending and
due, so two web replicas never forward the same row at once (and if a lease runs out mid-start, the workflow
id still dedupes the repeat)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import StatementError

from closeloop.db_errors import unreachable_database
from closeloop.models import InboxEntry, Incident
from closeloop.store.database import Database
from closeloop.store.tables import InboxRow

ERROR_CHARS = 500  # last_error is cut to this


def _entry(row: InboxRow, *, strict: bool = False) -> InboxEntry:
    """The row as an entry. A stored incident the model rejects now (stored by an older closeloop) raises
    ValidationError when `strict`, else stands in as its source and id only (for listings)."""
    try:
        incident = Incident.model_validate(row.incident)
    except ValidationError:
        if strict:
            raise
        incident = Incident.model_construct(source=row.source, external_id=row.external_id,
                                            title="(the stored incident no longer reads: see last_error)")
    return InboxEntry(id=row.id, incident=incident, via=row.via,
                      state=row.state,  # one of the three (validated), written only here
                      received_at=row.received_at, attempts=row.attempts, last_error=row.last_error,
                      forwarded_at=row.forwarded_at)


class IncidentInbox:
    def __init__(self, db: Database) -> None:
        self.db = db
        # built once: constructing it cost a fifth of a webhook's commit
        insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
        self._insert_stmt = insert(InboxRow).on_conflict_do_nothing(
            index_elements=[InboxRow.source, InboxRow.external_id]).returning(InboxRow.source, InboxRow.external_id)

    def receive(self, incident: Incident, via: str) -> bool:
        """Commit the incident as pending; False when this source and incident id are there already (a
        duplicate: the first one's row stands). The unique constraint decides, so concurrent deliveries of
        one incident get exactly one True."""
        outcome = self.receive_many([(incident, via)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def receive_many(self, arrivals: Sequence[tuple[Incident, str]]) -> list[bool | StatementError]:
        """`receive` for several (incident, via) at once, in one transaction and one statement (group commit:
        the web app commits the deliveries that arrived while the previous commit ran). The outcomes are in
        order: True for the first arrival of a source and id that was not there yet, False for every other
        one. An outage raises (nothing committed). A batch the database refuses for anything else (one bad
        row) is committed row by row instead, and only the bad row's arrivals get its error as their outcome."""
        if not arrivals:
            return []
        now = datetime.now(UTC)
        first: dict[tuple[str, str], int] = {}  # a key's first arrival in this batch: the only one that may be new
        for i, (incident, _) in enumerate(arrivals):
            first.setdefault((incident.source, incident.external_id), i)
        rows = {key: dict(source=key[0], external_id=key[1], incident=arrivals[i][0].model_dump(mode="json"),
                          via=arrivals[i][1][:32], state="pending", received_at=now, due_at=now, attempts=0)
                for key, i in first.items()}
        failed: dict[tuple[str, str], StatementError] = {}
        try:
            inserted = self._insert_new(list(rows.values()))
        except StatementError as e:
            if unreachable_database(e) or len(rows) == 1:
                raise
            inserted = set()
            for key, row in rows.items():  # one bad row must not fail the others: each in its own transaction
                try:
                    inserted |= self._insert_new([row])
                except StatementError as row_error:
                    if unreachable_database(row_error):
                        raise
                    failed[key] = row_error
        outcomes: list[bool | StatementError] = []
        for i, (incident, _) in enumerate(arrivals):
            key = (incident.source, incident.external_id)
            outcomes.append(failed[key] if key in failed else first[key] == i and key in inserted)
        return outcomes

    def _insert_new(self, rows: list[dict[str, object]]) -> set[tuple[str, str]]:
        """Insert the rows whose source and id are not there yet, in one statement; the keys inserted. Core,
        not the ORM: this is on the path every webhook waits for."""
        def insert(conn: Connection) -> set[tuple[str, str]]:
            return {(source, external_id) for source, external_id in conn.execute(self._insert_stmt, rows)}

        return self.db.write_promptly(insert)

    def entry(self, source: str, external_id: str) -> InboxEntry | None:
        with self.db.session() as s:
            row = s.scalar(select(InboxRow).where(InboxRow.source == source, InboxRow.external_id == external_id))
            return _entry(row) if row is not None else None

    def claim(self, limit: int, lease: timedelta, *, now: datetime | None = None) -> list[InboxEntry]:
        """Up to `limit` pending rows that are due, oldest first, leased to the caller for `lease` (another
        claim skips them until then). One UPDATE claims them; its WHERE is re-checked on rows another
        replica claimed meanwhile (PostgreSQL) or runs after that claim committed (SQLite)."""
        now = now or datetime.now(UTC)
        token = uuid.uuid4().hex
        due = (InboxRow.state == "pending") & (InboxRow.due_at <= now)
        oldest = select(InboxRow.id).where(due).order_by(InboxRow.due_at, InboxRow.id).limit(limit)
        with self.db.session() as s:
            s.execute(update(InboxRow).where(InboxRow.id.in_(oldest.scalar_subquery()), due)
                      .values(claim=token, due_at=now + lease).execution_options(synchronize_session=False))
        entries: list[InboxEntry] = []
        with self.db.session() as s:
            for row in s.scalars(select(InboxRow).where(InboxRow.claim == token).order_by(InboxRow.id)):
                try:
                    entries.append(_entry(row, strict=True))
                except ValidationError as e:  # stored by an older closeloop, unreadable now: never blocks the rest
                    row.state, row.claim = "refused", None
                    row.last_error = f"the stored incident is no longer valid: {e}"[:ERROR_CHARS]
        return entries

    def forwarded(self, ids: Iterable[int], *, now: datetime | None = None) -> None:
        """The lifecycles of these rows are started (or were already there)."""
        ids = list(ids)
        if ids:
            with self.db.session() as s:
                s.execute(update(InboxRow).where(InboxRow.id.in_(ids), InboxRow.state == "pending").values(
                    state="forwarded", forwarded_at=now or datetime.now(UTC), claim=None, last_error=None,
                    attempts=InboxRow.attempts + 1))

    def retry(self, ids: Iterable[int], error: str, at: datetime) -> None:
        """These rows could not be forwarded this time (`error`, for operators); due again at `at`."""
        ids = list(ids)
        if ids:
            with self.db.session() as s:
                s.execute(update(InboxRow).where(InboxRow.id.in_(ids), InboxRow.state == "pending").values(
                    due_at=at, claim=None, last_error=error[:ERROR_CHARS], attempts=InboxRow.attempts + 1))

    def refuse(self, row_id: int, reason: str) -> None:
        """Temporal refused this row's lifecycle as invalid: kept, not tried again (`reason` for operators)."""
        with self.db.session() as s:
            s.execute(update(InboxRow).where(InboxRow.id == row_id, InboxRow.state == "pending").values(
                state="refused", claim=None, last_error=reason[:ERROR_CHARS], attempts=InboxRow.attempts + 1))

    def entries(self, states: Iterable[str] = ("pending", "refused"), limit: int = 200) -> list[InboxEntry]:
        """Rows in these states, oldest first (what `closeloop inbox` lists)."""
        with self.db.session() as s:
            rows = s.scalars(select(InboxRow).where(InboxRow.state.in_(list(states)))
                             .order_by(InboxRow.received_at, InboxRow.id).limit(limit))
            return [_entry(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """Rows per state."""
        with self.db.session() as s:
            return {state: n for state, n in s.execute(
                select(InboxRow.state, func.count()).group_by(InboxRow.state))}
