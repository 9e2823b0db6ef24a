"""The web app's dashboard and library pages over HTTP, on PostgreSQL with 10,000 postmortems and 50,000 action
items (bench/_fill.py's data, as bench/dashboard.py and bench/library.py time the store calls alone).

The real app (`closeloop.web.app.create_app`) on that database, behind an authenticating proxy (`[web.auth]
mode = "proxy"`, trusted_proxies 127.0.0.1/32, the person named in `X-Forwarded-Email`), called in this process
through httpx's ASGITransport (no sockets, no server: routing, sign-in, the store call in its thread, the Jinja2
template, the security headers). The directory is the fill's 200 people (person-000 ... person-199: the first
of each team of 20 manages the other 19) under a director who is `[web.auth]` admin. No Temporal: these pages
do not use it (the client factory raises if anything asks), and the inbox's forwarder is left to the worker.
Each case is `--runs` GETs one after another after `--warmup` untimed ones: p50, p95 and max milliseconds.

    python bench/web_pages.py                      # a fresh database, 200 runs per case
    python bench/web_pages.py --reuse --runs 100   # the database a `bench/library.py --keep` run left
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench._common import BenchError, run_reporting_errors  # noqa: E402
from bench._fill import (  # noqa: E402
    DEFAULT_PG,
    PEOPLE,
    TEAM,
    Database,
    commonest_service,
    fill,
    now,
    people,
    summary,
)
from closeloop.config import load_config  # noqa: E402
from closeloop.secrets import Secrets  # noqa: E402
from closeloop.store.store import Store  # noqa: E402
from closeloop.web.app import create_app  # noqa: E402

DIRECTOR = "director"


def config_text(data_dir: Path, url: str) -> str:
    lines = [f'data_dir = "{data_dir}"', "", "[store]", f'url = "{url}"', "", "[inbox]", 'forward_in = "worker"', "",
             "[web.auth]", 'mode = "proxy"', 'trusted_proxies = ["127.0.0.1/32"]', f'admins = ["{DIRECTOR}"]', "",
             f"[people.{DIRECTOR}]", 'name = "The Director"', f'email = "{DIRECTOR}@example.com"', ""]
    for n, key in enumerate(people()):
        manager = DIRECTOR if n % TEAM == 0 else people()[n - n % TEAM]
        lines += [f'[people."{key}"]', f'name = "Person {n}"', f'email = "{key}@example.com"',
                  f'manager = "{manager}"', ""]
    return "\n".join(lines)


async def no_temporal() -> Any:
    raise RuntimeError("the benchmark's pages must not need Temporal")


async def run(url: str, runs: int, warmup: int, service: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="closeloop-bench-web-") as tmp:
        path = Path(tmp) / "closeloop.toml"
        path.write_text(config_text(Path(tmp) / "data", url))
        config = load_config(path, env={})
        store = Store(url)
        secrets = Secrets({"CLOSELOOP_SESSION_SECRET": "bench-session-secret"})
        app = create_app(config, no_temporal, secrets=secrets, store=store)
        admin, manager = f"{DIRECTOR}@example.com", f"{people()[0]}@example.com"
        cases: list[tuple[str, str, str]] = [
            ("dashboard", "admin", "/dashboard"),
            ("dashboard", "manager (19 reports)", "/dashboard"),
            ("dashboard, one service", "admin", "/dashboard?" + urlencode({"service": service})),
            ("library, no query", "admin", "/library"),
            ("library q=deploy", "admin", "/library?q=deploy"),
            ("library q=deploy", "manager (19 reports)", "/library?q=deploy"),
            ("library q=BGP", "admin", "/library?q=BGP"),
            ('library q="connection pool"', "admin", "/library?" + urlencode({"q": '"connection pool"'})),
            ("library q=deploy, one service", "admin", "/library?" + urlencode({"q": "deploy", "service": service})),
            ("library q=deploy, page 5", "manager (19 reports)", "/library?q=deploy&page=5"),
        ]
        results: dict[str, Any] = {}
        try:
            async with app.router.lifespan_context(app), httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40000)),
                    base_url="https://closeloop.test") as http:
                for page, who, target in cases:
                    email = admin if who == "admin" else manager
                    first = await http.get(target, headers={"X-Forwarded-Email": email})
                    if first.status_code != 200:
                        raise BenchError(f"GET {target} as {who}: {first.status_code} {first.text[:300]}")
                    found = re.search(r'id="library-count"[^>]*>(\d+) postmortem', first.text)
                    for _ in range(warmup):
                        await http.get(target, headers={"X-Forwarded-Email": email})
                    ms: list[float] = []
                    for _ in range(runs):
                        started = time.perf_counter()
                        response = await http.get(target, headers={"X-Forwarded-Email": email})
                        ms.append((time.perf_counter() - started) * 1000)
                        if response.status_code != 200:
                            raise BenchError(f"GET {target} as {who}: {response.status_code}")
                    results[f"{page} as {who}"] = {"path": target, "bytes": len(first.content),
                                                   "matches": int(found.group(1)) if found else None,
                                                   **summary(ms)}
        finally:
            await asyncio.to_thread(store.close)
    return results


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="a PostgreSQL server URL (the database is created)")
    parser.add_argument("--database", default="closeloop_bench_web")
    parser.add_argument("--postmortems", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=200, help="timed requests per case")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests per case first")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database (it is dropped otherwise)")
    parser.add_argument("--reuse", action="store_true", help="use the database as it is: no fill, no drop")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.runs < 1:
        raise BenchError("--runs must be at least 1")
    database: Database | None = None
    fill_s: float | None = None
    if args.reuse:
        url = make_url(args.pg_url).set(database=args.database).render_as_string(hide_password=False)
    else:
        database = Database(args.pg_url, args.database)
        url = database.url
    try:
        engine = create_engine(url)
        try:
            if database is not None:
                Store(url).close()  # migrated
                fill_s = fill(engine, args.postmortems, args.items, now(), args.seed)
            service = commonest_service(engine)
            with engine.connect() as conn:
                postmortems = conn.execute(text("SELECT count(*) FROM postmortems")).scalar_one()
        except BenchError:
            raise
        except Exception as e:  # noqa: BLE001
            raise BenchError(f"database {args.database!r}: {e}") from e
        finally:
            engine.dispose()
        cases = asyncio.run(run(url, args.runs, args.warmup, service))
    finally:
        if database is not None:
            database.drop(keep=args.keep)
    results = {"postmortems": postmortems, "people": PEOPLE + 1, "runs": args.runs,
               "fill_s": None if fill_s is None else round(fill_s, 1), "cases": cases}
    if args.json:
        print(json.dumps(results, indent=2))
        return results
    print(f"{postmortems} postmortems, {PEOPLE + 1} people; "
          f"{'filled in ' + str(results['fill_s']) + ' s' if fill_s is not None else 'reused'}; "
          f"{args.runs} GETs per case over httpx.ASGITransport")
    print(f"{'case':<52}{'matches':>8}{'KB':>7}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for label, r in cases.items():
        print(f"{label:<52}{r['matches'] if r['matches'] is not None else '':>8}{r['bytes'] / 1024:>7.1f}"
              f"{r['p50']:>9}{r['p95']:>9}{r['max']:>9}")
    return results


if __name__ == "__main__":
    sys.exit(0 if isinstance(run_reporting_errors(main), dict) else 1)
