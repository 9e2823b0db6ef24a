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
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy.engine import Engine  # noqa: E402

from bench._common import BenchError, run_reporting_errors  # noqa: E402
from bench._fill import DEFAULT_PG, PEOPLE, Database, busiest, commonest_service, fill, team_of, timed  # noqa: E402
from closeloop.readmodel import DashboardFilter  # noqa: E402
from closeloop.store.store import Store  # noqa: E402


def cases(engine: Engine) -> dict[str, DashboardFilter]:
    person, _ = busiest(engine)
    service = commonest_service(engine)
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
    database = Database(args.pg_url, args.database)
    store = Store(database.url)
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
        database.drop(keep=args.keep)
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
