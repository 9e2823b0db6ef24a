"""How fast the web app's library search (closeloop/store/insights.py, `StoreInsights.library`) answers on
PostgreSQL with 10,000 postmortems (7,300 of them published, with 1.5-5 KB documents) and 50,000 action items.

The database is bench/_fill.py's (the dashboard benchmark's rows, plus the published documents): a fresh one
(`--database`, default `closeloop_bench_library`; dropped first if it is there), migrated, filled, `VACUUM
ANALYZE`d; or, with `--reuse`, one a previous `--keep` run left (nothing is filled or dropped then). Each case is
one LibraryFilter with the web page's 25 hits a page, called `--runs` times after `--warmup` untimed calls, in
this process, one after another: p50, p95 and max in milliseconds, and how many postmortems match.

    python bench/library.py                       # 127.0.0.1:5432, 200 runs per case
    python bench/library.py --runs 50 --keep --json
    python bench/library.py --reuse --runs 50     # on the database the last --keep left
    python bench/library.py --reuse --explain     # EXPLAIN ANALYZE of each case's statements, no timing
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, event, text  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402

from bench._common import BenchError, run_reporting_errors  # noqa: E402
from bench._fill import DEFAULT_PG, Database, commonest_service, fill, now, timed  # noqa: E402
from closeloop.readmodel import LibraryFilter  # noqa: E402
from closeloop.store.store import Store  # noqa: E402

PER_PAGE = 25  # the library page's (closeloop/web/pages.py)
COMMON, RARE, PHRASE = "deploy", "BGP", '"connection pool"'


def cases(engine: Engine, at: datetime) -> dict[str, LibraryFilter]:
    service = commonest_service(engine)
    page = {"limit": PER_PAGE}
    return {
        "no query (newest first)": LibraryFilter(**page),
        f"common word ({COMMON})": LibraryFilter(query=COMMON, **page),
        f"rare word ({RARE})": LibraryFilter(query=RARE, **page),
        f"phrase ({PHRASE})": LibraryFilter(query=PHRASE, **page),
        "two words (kafka lag)": LibraryFilter(query="kafka lag", **page),
        f"{COMMON} + one service": LibraryFilter(query=COMMON, service=service, **page),
        f"{COMMON} + last 90 days": LibraryFilter(query=COMMON, since=at - timedelta(days=90), until=at, **page),
        f"{COMMON}, page 5 (offset 100)": LibraryFilter(query=COMMON, offset=4 * PER_PAGE, **page),
    }


def explain(store: Store, filters: LibraryFilter) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of every SELECT one library() call sends."""
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        store.insights.library(filters)
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    out = []
    with store.engine.connect() as conn:
        for statement, parameters in statements:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            with raw.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                out.append(statement + "\n" + "\n".join(row[0] for row in cur.fetchall()))
    return out


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="a PostgreSQL server URL (the database is created)")
    parser.add_argument("--database", default="closeloop_bench_library")
    parser.add_argument("--postmortems", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=200, help="timed calls per case")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per case first")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database (it is dropped otherwise)")
    parser.add_argument("--reuse", action="store_true", help="use the database as it is: no fill, no drop")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of each case, no timing")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.postmortems < 1 or args.items < 0 or args.runs < 1:
        raise BenchError("--postmortems and --runs must be at least 1, --items at least 0")
    database: Database | None = None
    if args.reuse:
        url = make_url(args.pg_url).set(database=args.database).render_as_string(hide_password=False)
        probe = create_engine(url)
        try:
            with probe.connect() as conn:
                published = conn.execute(text("SELECT count(*) FROM postmortems "
                                              "WHERE document_markdown IS NOT NULL")).scalar_one()
        except Exception as e:  # noqa: BLE001
            raise BenchError(f"--reuse: cannot read database {args.database!r}: {e}") from e
        finally:
            probe.dispose()
        if not published:
            raise BenchError(f"--reuse: database {args.database!r} has no published postmortems")
    else:
        database = Database(args.pg_url, args.database)
        url = database.url
    store = Store(url)
    at = now()
    try:
        fill_s = None if args.reuse else fill(store.engine, args.postmortems, args.items, at, args.seed)
        with store.engine.connect() as conn:
            published = conn.execute(text("SELECT count(*) FROM postmortems "
                                          "WHERE document_markdown IS NOT NULL")).scalar_one()
            mean_kb = conn.execute(text("SELECT avg(octet_length(document_markdown)) / 1024.0 FROM postmortems "
                                        "WHERE document_markdown IS NOT NULL")).scalar_one()
        results: dict[str, Any] = {"postmortems": args.postmortems, "items": args.items, "published": published,
                                   "document_kb_mean": round(float(mean_kb), 2), "runs": args.runs,
                                   "fill_s": None if fill_s is None else round(fill_s, 1), "cases": {}}
        for label, filters in cases(store.engine, at).items():
            if args.explain:
                print(f"===== {label}")
                for plan in explain(store, filters):
                    print(plan, end="\n\n")
                continue
            found = store.insights.library(filters)
            results["cases"][label] = {"matches": found.total, "hits": len(found.hits),
                                       **timed(lambda f=filters: store.insights.library(f), args.runs, args.warmup)}
    finally:
        store.close()
        if database is not None:
            database.drop(keep=args.keep)
    if args.explain:
        return results
    if args.json:
        print(json.dumps(results, indent=2))
        return results
    print(f"{args.postmortems} postmortems, {published} published (documents {results['document_kb_mean']} KB on "
          f"average), {args.items} action items; "
          f"{'filled in ' + str(results['fill_s']) + ' s' if fill_s is not None else 'reused'}; "
          f"{args.runs} runs per case, {PER_PAGE} hits a page")
    print(f"{'case':<34}{'matches':>9}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for label, r in results["cases"].items():
        print(f"{label:<34}{r['matches']:>9}{r['p50']:>9}{r['p95']:>9}{r['max']:>9}")
    return results


if __name__ == "__main__":
    sys.exit(0 if isinstance(run_reporting_errors(main), dict) else 1)
