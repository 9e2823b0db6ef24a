"""How fast the web app's dashboard (closeloop/store/views.py, `Views.dashboard`) answers on PostgreSQL with
10,000 postmortems and 50,000 action items.

A fresh database (`--database`, default `closeloop_bench_dashboard`; dropped first if it is there) is migrated
and filled with bulk inserts (one multi-row INSERT per 1,000 rows, not the store's one-transaction-per-row
writes): 200 people in teams of 20 under 10 managers, incidents of 40 services (1-3 each) and four severities,
postmortems across every stage (the open ones due within three weeks either side of now, some flagged stalled),
five action items each (open ones due from 200 days ago to 60 days ahead, done ones with and without a verdict),
owners skewed so a few people own much more than most. Then `dashboard()` is timed for each case below, `--runs`
times after `--warmup` untimed runs, in this process, one call after another (the web app's thread pool calls it
so): p50, p95 and max in milliseconds. The database is dropped at the end unless `--keep`.

    python bench/dashboard.py                         # 127.0.0.1:5432, 200 runs per case
    python bench/dashboard.py --runs 50 --keep --json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert, text  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402

from bench._common import BenchError, run_reporting_errors  # noqa: E402
from closeloop.readmodel import DashboardFilter  # noqa: E402
from closeloop.store.store import Store  # noqa: E402
from closeloop.store.tables import ActionItemRow, IncidentRow, IncidentServiceRow, PostmortemRow  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PEOPLE, TEAM = 200, 20  # 10 managers (the first of each team of 20) and their reports
SERVICES = [f"service-{n:02d}" for n in range(40)]
SEVERITIES = (("SEV1", 10), ("SEV2", 30), ("SEV3", 45), ("SEV4", 15))
STAGES = (("closed", 55), ("following_up", 15), ("drafting", 10), ("in_review", 7), ("published", 3),
          ("scheduling", 3), ("collecting_timeline", 2), ("skipped", 3), ("cancelled", 2))
VERDICTS = ((None, 25), ("effective", 60), ("ineffective", 10), ("unknown", 5))
BATCH = 1000


def people() -> list[str]:
    return [f"person-{n:03d}" for n in range(PEOPLE)]


def team_of(manager: int) -> list[str]:
    """The manager's people (themselves included): a block of TEAM."""
    start = manager * TEAM
    return people()[start:start + TEAM]


def pick(rng: random.Random, weighted: tuple[tuple[Any, int], ...]) -> Any:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def owner(rng: random.Random, everyone: list[str]) -> str:
    """Skewed: a few people own a lot (on-call heavy teams), most own a little."""
    return everyone[min(int(rng.paretovariate(1.2)) * 7 + rng.randrange(7), len(everyone)) - 1] \
        if rng.random() < 0.3 else rng.choice(everyone)


def rows(postmortems: int, items: int, now: datetime, seed: int) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """(table, rows) in insert order, in batches."""
    rng = random.Random(seed)
    everyone = people()
    incidents: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    pms: list[dict[str, Any]] = []
    stages: list[str] = []
    for n in range(1, postmortems + 1):
        started = now - timedelta(days=rng.uniform(0, 730))
        severity = pick(rng, SEVERITIES)
        own = rng.sample(SERVICES, rng.choice((1, 1, 1, 2, 2, 3)))
        incidents.append(dict(id=n, source="pagerduty", external_id=f"P{n:06d}",
                              title=f"{own[0]} returns errors ({n})", severity=severity, fingerprint=f"fp-{n % 500}",
                              started_at=started, resolved_at=started + timedelta(hours=rng.uniform(0.2, 12)),
                              postmortem_required=True, recorded_at=started,
                              payload={"source": "pagerduty", "external_id": f"P{n:06d}", "title": f"{own[0]} ({n})",
                                       "severity": severity, "services": own}))
        services += [dict(incident_id=n, service=s) for s in own]
        stage = pick(rng, STAGES)
        stages.append(stage)
        waiting = stage in ("drafting", "in_review")
        due = now + timedelta(days=rng.uniform(-21, 21)) if waiting or stage == "scheduling" else None
        pms.append(dict(id=f"postmortem/pagerduty/P{n:06d}", incident_id=n, owner=owner(rng, everyone), stage=stage,
                        stalled=waiting and rng.random() < 0.2, stage_due_at=due,
                        document_ref=f"documents/P{n:06d}.md" if stage in ("published", "following_up", "closed")
                        else None, updated_at=started + timedelta(days=rng.uniform(1, 30))))
    yield from ((IncidentRow, incidents[i:i + BATCH]) for i in range(0, len(incidents), BATCH))
    yield from ((IncidentServiceRow, services[i:i + BATCH]) for i in range(0, len(services), BATCH))
    yield from ((PostmortemRow, pms[i:i + BATCH]) for i in range(0, len(pms), BATCH))

    batch: list[dict[str, Any]] = []
    for k in range(items):
        n = k % postmortems  # five per postmortem with the defaults
        pm, stage = pms[n], stages[n]
        number = k // postmortems + 1
        item_id = f"{pm['id']}/item-{number}"
        if stage in ("closed", "skipped"):
            status = pick(rng, (("done", 88), ("wont_do", 12)))
        elif stage == "cancelled":
            status = "cancelled"
        elif stage == "following_up":
            status = pick(rng, (("open", 60), ("done", 35), ("wont_do", 5)))
        else:
            status = "open"
        due = now + timedelta(days=rng.uniform(-200, 60))
        done = status == "done"
        verdict = pick(rng, VERDICTS) if done and stage != "following_up" else None
        ticket = f"OPS-{k + 1}" if rng.random() < 0.7 else None
        priority, kind = rng.choice(("P1", "P2", "P2", "P3", "P3", "P4")), rng.choice(("prevent", "detect",
                                                                                        "mitigate", "process"))
        who = owner(rng, everyone)
        title = f"Follow-up {number} of {pm['id']}"
        payload = {"id": item_id, "postmortem_id": pm["id"], "title": title, "description": "", "owner": who,
                   "priority": priority, "kind": kind, "due_at": due.isoformat(), "tracker": "jira",
                   "ticket_key": ticket, "ticket_url": f"https://jira.example.com/browse/{ticket}" if ticket else None,
                   "status": status, "verdict": verdict}
        batch.append(dict(id=item_id, postmortem_id=pm["id"], title=title, owner=who, priority=priority, kind=kind,
                          due_at=due, tracker="jira", ticket_key=ticket, status=status,
                          completed_at=due - timedelta(days=rng.uniform(0, 10)) if done else None, verdict=verdict,
                          payload=payload, updated_at=now - timedelta(days=rng.uniform(0, 100))))
        if len(batch) == BATCH:
            yield ActionItemRow, batch
            batch = []
    if batch:
        yield ActionItemRow, batch


def fill(engine: Engine, postmortems: int, items: int, now: datetime, seed: int) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        for table, batch in rows(postmortems, items, now, seed):
            conn.execute(insert(table), batch)
        conn.execute(text("SELECT setval(pg_get_serial_sequence('incidents', 'id'), (SELECT max(id) FROM incidents))"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")  # as autovacuum would have by then
    return time.perf_counter() - started


def busiest(engine: Engine) -> tuple[str, int]:
    """The person with the most open items (the slowest "person" case) and their count."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT owner, count(*) FROM action_items WHERE status = 'open' "
                                "GROUP BY owner ORDER BY count(*) DESC, owner LIMIT 1")).one()
    return row[0], int(row[1])


def cases(engine: Engine) -> dict[str, DashboardFilter]:
    person, _ = busiest(engine)
    with engine.connect() as conn:
        service = conn.execute(text("SELECT service FROM incident_services GROUP BY service "
                                    "ORDER BY count(*) DESC, service LIMIT 1")).scalar_one()
    team = team_of(0)
    return {
        "admin (everyone)": DashboardFilter(),
        f"manager ({len(team)} people)": DashboardFilter(owners=team),
        "person (most open items)": DashboardFilter(owners=[person]),
        "admin, one service": DashboardFilter(service=service),
        "admin, severity SEV2": DashboardFilter(severity="SEV2"),
        "manager, service and SEV2": DashboardFilter(owners=team, service=service, severity="SEV2"),
        "admin, limit 1000": DashboardFilter(limit=1000),
    }


def timed(call: Callable[[], Any], runs: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        call()
    ms: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        ms.append((time.perf_counter() - started) * 1000)
    ms.sort()
    return {"p50": round(statistics.median(ms), 1), "p95": round(ms[max(0, int(len(ms) * 0.95) - 1)], 1),
            "max": round(ms[-1], 1)}


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="a PostgreSQL server URL (the database is created)")
    parser.add_argument("--database", default="closeloop_bench_dashboard")
    parser.add_argument("--postmortems", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=200, help="timed calls per case")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per case first")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database (it is dropped otherwise)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.postmortems < 1 or args.items < 0 or args.runs < 1:
        raise BenchError("--postmortems and --runs must be at least 1, --items at least 0")
    admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    name = args.database
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(args.pg_url).set(database=name).render_as_string(hide_password=False)
    store = Store(url)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        fill_s = fill(store.engine, args.postmortems, args.items, now, args.seed)
        person, open_items = busiest(store.engine)
        full = store.views.dashboard(DashboardFilter(), now)
        results: dict[str, Any] = {
            "postmortems": args.postmortems, "items": args.items, "people": PEOPLE, "runs": args.runs,
            "fill_s": round(fill_s, 1), "stalled_total": full.stalled_total, "overdue_total": full.overdue_total,
            "busiest_person": {"who": person, "open_items": open_items}, "cases": {},
        }
        for label, filters in cases(store.engine).items():
            d = store.views.dashboard(filters, now)
            results["cases"][label] = {"stalled": d.stalled_total, "overdue": d.overdue_total,
                                       **timed(lambda f=filters: store.views.dashboard(f, now), args.runs,
                                               args.warmup)}
    finally:
        store.close()
        if not args.keep:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    if args.json:
        print(json.dumps(results, indent=2))
        return results
    print(f"{args.postmortems} postmortems, {args.items} action items, {PEOPLE} people; filled in "
          f"{results['fill_s']} s; {full.stalled_total} stalled, {full.overdue_total} overdue; "
          f"{args.runs} runs per case")
    print(f"{'case':<30}{'stalled':>9}{'overdue':>9}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for label, r in results["cases"].items():
        print(f"{label:<30}{r['stalled']:>9}{r['overdue']:>9}{r['p50']:>9}{r['p95']:>9}{r['max']:>9}")
    return results


if __name__ == "__main__":
    sys.exit(0 if isinstance(run_reporting_errors(main), dict) else 1)
