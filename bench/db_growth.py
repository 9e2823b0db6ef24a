"""How much the database grows per 1,000 lifecycles, with and without retention (closeloop/store/retention.py).

N complete lifecycles' rows are written through the store's own APIs, as a real lifecycle leaves them (the
rows per lifecycle are those of tests/workflows/test_happy_path.py's lifecycle, counted in its store, plus
what the webhooks and a GitHub tracker add: see LIFECYCLE below). The database is measured empty, full, then
with every row aged past retention and pruned twice: once with the default `[retention]` (closed lifecycles
kept) and once with `closed_records` set (closed lifecycles go too). Sizes: the SQLite file after a
checkpoint and VACUUM; on PostgreSQL `pg_total_relation_size` summed over closeloop's tables, after
`VACUUM FULL` (live data; a plain VACUUM keeps the freed pages for reuse, so the files stop growing instead).

    python bench/db_growth.py                       # SQLite and PostgreSQL (127.0.0.1:5432), 1,000 lifecycles
    python bench/db_growth.py --lifecycles 200 --no-pg --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, event, func, select, text, update  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench._common import BenchError, run_reporting_errors  # noqa: E402
from closeloop.config import RetentionSettings  # noqa: E402
from closeloop.models import (  # noqa: E402
    ActionItem,
    Incident,
    ItemStatus,
    ReviewDecision,
    ReviewRecord,
    TimelineEvent,
    Verdict,
)
from closeloop.store.retention import Cutoffs  # noqa: E402
from closeloop.store.store import Store  # noqa: E402
from closeloop.store.tables import (  # noqa: E402
    ActionItemRow,
    Base,
    NotificationRow,
    PostmortemRow,
    RateEventRow,
    WebhookDeliveryRow,
)

# One lifecycle, as tests/workflows/test_happy_path.py's leaves its store (counted there: 1 incident, 1 service,
# 4 timeline events, 1 postmortem with its document, 2 review votes, 1 meeting, 2 action items with a local
# ticket and 2 comments each, 15 notifications), plus what a GitHub tracker adds: each item's ticket closed by
# a webhook delivery and seen by the sweep (4 delivery log rows), issue and comment creation paced (4 rate
# events).
LIFECYCLE = {"items": 2, "comments_per_item": 2, "timeline": 4, "notifications": 15, "deliveries": 4,
             "rate_events": 4}
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def write_lifecycle(store: Store, n: int, now: datetime) -> None:
    """The rows one complete lifecycle leaves, through the store's APIs."""
    t0 = now - timedelta(days=60)
    inc = Incident(source="pagerduty", external_id=f"P{n:06d}", title=f"Checkout returns 500s ({n})",
                   severity="SEV2", services=["checkout"], commander="alice", participants=["bob"],
                   started_at=t0, resolved_at=t0 + timedelta(hours=1), fingerprint=f"fp-{n % 50}")
    pid = inc.workflow_id
    records = store.records
    records.upsert_postmortem(pid, inc, owner="alice", stage="closed", stalled=False, stage_due_at=None)
    records.add_timeline_events(inc, [
        TimelineEvent(at=t0 + timedelta(minutes=5 * k), source="pagerduty", kind="note",
                      text=f"{k}: responders looked at the payment client's error rate and its config", actor="bob")
        for k in range(LIFECYCLE["timeline"])])
    for reviewer in ("bob", "erin"):
        records.record_review(pid, ReviewRecord(round=1, reviewer=reviewer, decision=ReviewDecision.approve,
                                                comment="Say why the canary did not catch it.", at=t0))
    store.local.book_meeting(idempotency_key=f"{pid}/meeting", title=f"Postmortem review: {inc.title}",
                             start=t0 + timedelta(days=1), end=t0 + timedelta(days=1, hours=1),
                             attendees=["alice", "bob", "erin"])
    document = "## Summary\nCheckout returned 500s after a config push.\n" * 40
    records.save_document(pid, markdown=document, html=f"<html><body>{document}</body></html>",
                          ref=f"documents/{n}.md")
    for k in range(1, LIFECYCLE["items"] + 1):
        item = ActionItem(id=f"{pid}/item-{k}", postmortem_id=pid, title="Validate config before push",
                          owner="bob", due_at=t0 + timedelta(days=14), tracker="local",
                          status=ItemStatus.done, completed_at=t0 + timedelta(days=10), verdict=Verdict.effective)
        ticket = store.local.create_ticket(marker=f"closeloop:{item.id}", title=item.title, body=document[:400],
                                           assignee="bob", priority="P2", due_at=item.due_at)
        records.upsert_action_item(item.model_copy(update={"ticket_key": ticket.key}))
        for c in range(LIFECYCLE["comments_per_item"]):
            store.local.add_ticket_comment(ticket.key, "Reminder: this action item is due in 3 days.",
                                           f"{item.id}/reminder-{c}")
    for k in range(LIFECYCLE["notifications"]):
        store.local.record_notification(key=f"{pid}/notify-{k}", kind="reminder", recipient="alice",
                                        subject=f"Postmortem {pid}: the draft is due",
                                        body="Your postmortem draft is due tomorrow. " * 6, at=t0, postmortem_id=pid,
                                        item_id=None)
    for k in range(LIFECYCLE["deliveries"]):
        store.deliveries.record_delivery("github" if k % 2 else "sweep", str(uuid.uuid4()))
    for k in range(LIFECYCLE["rate_events"]):
        store.rate_limits.take_rate_slot(f"github:content:{n % 3}", limit=10_000, window=timedelta(minutes=1),
                                         now=t0 + timedelta(seconds=k))


def age_everything(store: Store, when: datetime) -> None:
    """As if every row had been written at `when`."""
    with store.db.session() as s:
        s.execute(update(WebhookDeliveryRow).values(received_at=when))
        s.execute(update(NotificationRow).values(sent_at=when))
        s.execute(update(RateEventRow).values(at=when))
        s.execute(update(PostmortemRow).values(updated_at=when))
        s.execute(update(ActionItemRow).values(updated_at=when))


def size(store: Store) -> int:
    """Bytes of closeloop's data: see the module docstring."""
    engine = store.engine
    if engine.dialect.name == "sqlite":
        engine.dispose()  # no pooled connection holds a snapshot that would stop the checkpoint
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM")  # in WAL mode the vacuumed file goes to the WAL first...
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # ...and back into the database here
        path = Path(make_url(store.url).database or "")
        wal = path.with_name(path.name + "-wal")
        return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return sum(table_sizes(engine).values())


def table_sizes(engine: Any) -> dict[str, int]:
    """PostgreSQL: bytes of each of closeloop's tables (`pg_total_relation_size`: with its indexes and TOAST),
    after `VACUUM FULL` (live data only). bench/capacity.py measures real lifecycles' growth with it too."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM FULL")
        tables = [t.name for t in Base.metadata.sorted_tables]
        each = text("SELECT t, pg_total_relation_size(quote_ident(t)) FROM unnest(CAST(:t AS text[])) AS t")
        return {name: int(n or 0) for name, n in conn.execute(each, {"t": tables})}


def rows(store: Store) -> int:
    with store.db.session() as s:
        return sum(s.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables)


def fast_commits(store: Store) -> None:
    """Commits without waiting for the disk (the bench's own database; the bytes stored are the same)."""
    if store.engine.dialect.name != "sqlite":
        return  # PostgreSQL: synchronous_commit=off in the URL (pg_database)

    @event.listens_for(store.engine, "connect")
    def _fast(conn: Any, _record: Any) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA synchronous=OFF")
        cur.close()


def measure(url: str, lifecycles: int, batch: int) -> dict[str, Any]:
    store = Store(url)
    fast_commits(store)
    try:
        now = datetime.now(UTC)
        out: dict[str, Any] = {"empty": size(store)}
        started = time.perf_counter()
        for n in range(lifecycles):
            write_lifecycle(store, n, now)
        out["write_s"] = round(time.perf_counter() - started, 1)
        out["rows_full"] = rows(store)
        out["full"] = size(store)
        age_everything(store, now - timedelta(days=400))
        started = time.perf_counter()
        default = store.retention.prune(Cutoffs.of(RetentionSettings(), now), batch_size=batch)
        out["default_retention"] = size(store)
        out["rows_default_retention"] = rows(store)
        closed = store.retention.prune(Cutoffs.of(RetentionSettings(closed_records=timedelta(days=365)), now),
                                       batch_size=batch)
        out["prune_s"] = round(time.perf_counter() - started, 1)
        out["closed_records_365d"] = size(store)
        out["rows_closed_records_365d"] = rows(store)
        out["deleted"] = {"default": default.deleted, "closed_records": closed.deleted,
                          "lifecycles": closed.lifecycles}
        return out
    finally:
        store.close()


def pg_database(server_url: str) -> tuple[str, Any]:
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"closeloop_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    url = make_url(server_url).set(database=name).update_query_dict({"options": "-c synchronous_commit=off"})
    return url.render_as_string(hide_password=False), drop


def kb(n: int) -> str:
    return f"{n / 1024:,.0f} KiB"


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lifecycles", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000, help="[retention] batch_size")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="a PostgreSQL server URL (a database is created)")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.lifecycles < 1:
        raise BenchError("--lifecycles must be at least 1")
    results: dict[str, Any] = {"lifecycles": args.lifecycles, "per_lifecycle": LIFECYCLE}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure(f"sqlite:///{tmp}/closeloop.db", args.lifecycles, args.batch)
    if not args.no_pg:
        url, drop = pg_database(args.pg_url)
        try:
            results["postgresql"] = measure(url, args.lifecycles, args.batch)
        finally:
            drop()
    if args.json:
        print(json.dumps(results, indent=2))
        return results
    scale = 1000 / args.lifecycles
    print(f"{args.lifecycles} lifecycles; growth per 1,000 lifecycles (size minus the empty database's)")
    print(f"{'database':<12}{'no retention':>16}{'default':>16}{'closed 365d':>16}{'rows':>24}{'write/prune':>14}")
    for db in ("sqlite", "postgresql"):
        r = results.get(db)
        if not r:
            continue
        grow = [kb(int((r[k] - r["empty"]) * scale)) for k in ("full", "default_retention", "closed_records_365d")]
        counts = f"{r['rows_full']}/{r['rows_default_retention']}/{r['rows_closed_records_365d']}"
        print(f"{db:<12}{grow[0]:>16}{grow[1]:>16}{grow[2]:>16}{counts:>24}{r['write_s']:>8}s/{r['prune_s']}s")
    return results


if __name__ == "__main__":
    sys.exit(0 if isinstance(run_reporting_errors(main), dict) else 1)
