"""Throughput and history size of closeloop lifecycles on the real Temporal dev server, against a bare
workflow with the same number of activities and timers, run in the same process.

    python bench/lifecycles.py --n 50                  # SQLite store in a temp dir
    python bench/lifecycles.py --n 50 --json           # the figures as JSON on stdout
    python bench/lifecycles.py --n 50 --db-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

See bench/README.md for what is measured and how to read it. Progress goes to stderr; the table (or the
JSON) to stdout. Exit status 1 with one line on stderr when anything fails; the dev server is always
stopped."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from _common import BENCH_CONFIG, BenchError, Cleanup, Cpu, dev_server, run_bench  # noqa: E402
from _common import child_pids as server_pids  # noqa: E402
from _common import redact as _redact  # noqa: E402
from bare import BareInput, BareWorkflow, noop  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client, WorkflowHandle  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from closeloop import logging as closeloop_logging  # noqa: E402
from closeloop.client import start_postmortem  # noqa: E402
from closeloop.config import Config, load_config  # noqa: E402
from closeloop.contract import action_item_workflow_id  # noqa: E402
from closeloop.integrations.registry import build  # noqa: E402
from closeloop.models import (  # noqa: E402
    ActionItemSpec,
    CompleteItem,
    DraftSubmission,
    Incident,
    PostmortemSummary,
    ReviewDecision,
    ReviewVote,
    Stage,
    VerdictInput,
)
from closeloop.worker import build_worker  # noqa: E402
from closeloop.workflows.action_item import ActionItemWorkflow  # noqa: E402
from closeloop.workflows.postmortem import PostmortemWorkflow  # noqa: E402

T = TypeVar("T")

# The policy the benchmark's incidents (SEV2, a service of their own) get: BENCH_CONFIG's policy with these
# overrides, so that no step waits on the clock for long. Nothing is chased: drafts and reviews are due
# in days and reminders come hourly, so no reminder, stall or escalation fires. Items are checked for
# effectiveness 1 s after completion (often already past by the time the item gets there under load) and
# look back 1 s for recurrences; the verdict window is long because the driver always answers at once. The meeting
# may fall on any 15-minute
# slot of the next 30 days, so every lifecycle books one (BENCH_CONFIG's three people share only a couple
# of working hours a day; with its meeting policy most lifecycles of a large run would find no slot and
# skip the invites, and lifecycles would not all do the same work).
BENCH_POLICY = """
[severity.SEV2]
reminder_every = "1h"
effectiveness_delay = "1s"
recurrence_window = "1s"
verdict_timeout = "10m"

[severity.SEV2.meeting]
within_business_days = 30
duration = "15m"
slot_step = "15m"
working_hours = { start = 00:00:00, end = 23:59:00, days = [0, 1, 2, 3, 4, 5, 6] }
"""

OWNER = "alice"
REVIEWERS = ("bob", "erin")
ITEM_OWNERS = ("bob", "erin")


# --------------------------------------------------------------------------- helpers


def progress(label: str, done: int, total: int) -> None:
    step = max(1, total // 10)
    if done % step == 0 or done == total:
        print(f"{label}: completed {done}/{total}", file=sys.stderr, flush=True)


QUERIES = [0]  # state queries the driver sent during the timed closeloop run


async def poll(handle: WorkflowHandle[Any, Any], query: Any, ok: Callable[[Any], bool], what: str, *,
               interval: float, timeout: float) -> Any:
    """Poll a state Query until `ok(state)`; BenchError after `timeout` seconds. The first poll waits
    `interval`, each later one half as long again, up to 0.5 s (or `interval` if larger): quick when the
    workflow is quick, few queries when it is busy."""
    delay, longest = interval, max(interval, 0.5)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    error: Exception | None = None
    while True:
        try:
            QUERIES[0] += 1
            last = await handle.query(query)
            error = None
            if last is not None and ok(last):
                return last
        except Exception as e:  # noqa: BLE001 - not started yet, still starting: try again
            error = e
        if loop.time() > deadline:
            seen = f"last error: {error}" if error else f"last stage/phase: {_where(last)}"
            raise BenchError(f"{handle.id}: no {what} after {timeout:.0f}s ({seen})")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, longest)


def _where(state: Any) -> str:
    return str(getattr(state, "stage", None) or getattr(state, "phase", None))


@dataclass
class History:
    events: int = 0
    activities: int = 0
    timers: int = 0
    timers_fired: int = 0

    def add(self, other: History) -> None:
        self.events += other.events
        self.activities += other.activities
        self.timers += other.timers
        self.timers_fired += other.timers_fired


async def workflow_history(client: Client, workflow_id: str) -> History:
    """Every run of the workflow (continue-as-new is followed back to the first run)."""
    out = History()
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        for event in history.events:
            out.events += 1
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                out.activities += 1
            elif event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
                out.timers += 1
            elif event.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
                out.timers_fired += 1
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return out
        run_id = started.continued_execution_run_id


async def run_many(n: int, concurrency: int, label: str,
                   one: Callable[[int], Awaitable[T]]) -> tuple[list[T], float, list[float]]:
    """Run one(0..n-1) with at most `concurrency` at a time: results, wall seconds, per-run seconds."""
    sem = asyncio.Semaphore(concurrency)
    done = 0
    latencies: list[float] = []

    async def guarded(i: int) -> T:
        nonlocal done
        async with sem:
            t = time.perf_counter()
            result = await one(i)
            latencies.append(time.perf_counter() - t)
        done += 1
        progress(label, done, n)
        return result

    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(guarded(i)) for i in range(n)]
    try:
        results = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return list(results), time.perf_counter() - t0, latencies


async def gather_limited(limit: int, coros: list[Awaitable[T]]) -> list[T]:
    sem = asyncio.Semaphore(limit)

    async def guarded(c: Awaitable[T]) -> T:
        async with sem:
            return await c

    return list(await asyncio.gather(*(guarded(c) for c in coros)))


# --------------------------------------------------------------------------- closeloop lifecycles


@dataclass
class Driver:
    client: Client
    task_queue: str
    items: int
    run_tag: str
    interval: float
    timeout: float

    def incident(self, i: int) -> Incident:
        # A service and dedup key of its own per incident: incidents sharing a service or a fingerprint are
        # "the same kind", so with one service for all, every incident started while an item of another
        # lifecycle is in its recurrence window would count as a recurrence, turn that verdict
        # "ineffective" and add escalations: lifecycles would not all do the same work.
        return Incident(source="api", external_id=f"BENCH-{self.run_tag}-{i}", title=f"Checkout returns 500s ({i})",
                        severity="SEV2", services=[f"bench-{self.run_tag}-{i}"], commander=OWNER,
                        participants=["bob"], dedup_key=f"bench-{self.run_tag}-{i}")

    async def lifecycle(self, i: int) -> PostmortemSummary:
        started = await start_postmortem(self.client, self.task_queue, self.incident(i))
        if not started.new:
            raise BenchError(f"{started.workflow_id}: a lifecycle with this id already existed")
        handle = self.client.get_workflow_handle_for(PostmortemWorkflow.run, started.workflow_id)
        wait = dict(interval=self.interval, timeout=self.timeout)

        await poll(handle, PostmortemWorkflow.state, lambda s: s.stage == Stage.drafting, "drafting stage", **wait)
        draft = DraftSubmission(
            by=OWNER, summary="Checkout failed for 40 minutes.", root_cause="A bad config push.",
            action_items=[
                ActionItemSpec(title=f"Action item {k}", owner=ITEM_OWNERS[k % len(ITEM_OWNERS)],
                               priority="P1" if k % 2 == 0 else "P2", kind="prevent")
                for k in range(self.items)
            ],
        )
        await handle.execute_update(PostmortemWorkflow.submit_draft, draft)
        await poll(handle, PostmortemWorkflow.state, lambda s: s.stage == Stage.in_review, "in_review stage", **wait)
        for reviewer in REVIEWERS:
            await handle.execute_update(PostmortemWorkflow.review,
                                        ReviewVote(reviewer=reviewer, decision=ReviewDecision.approve))

        await asyncio.gather(*(
            self.item(action_item_workflow_id(started.workflow_id, f"item-{k + 1}"), ITEM_OWNERS[k % len(ITEM_OWNERS)])
            for k in range(self.items)
        ))
        summary = await handle.result()
        if summary.stage != Stage.closed or len(summary.items) != self.items or summary.effective != self.items:
            verdicts = "; ".join(f"{item.id}: {item.verdict.value if item.verdict else None} ({item.verdict_note})"
                                 for item in summary.items)
            raise BenchError(f"{started.workflow_id}: ended {summary.stage.value} with {summary.effective} of "
                             f"{len(summary.items)} item(s) effective, expected closed with {self.items} of "
                             f"{self.items}: {verdicts}")
        return summary

    async def item(self, item_id: str, owner: str) -> None:
        handle = self.client.get_workflow_handle_for(ActionItemWorkflow.run, item_id)
        wait = dict(interval=self.interval, timeout=self.timeout)
        await poll(handle, ActionItemWorkflow.state, lambda s: s.phase == "tracking" and s.item.ticket_key,
                   "ticket", **wait)
        await handle.execute_update(ActionItemWorkflow.complete, CompleteItem(by=owner))
        await poll(handle, ActionItemWorkflow.state, lambda s: s.phase == "awaiting_verdict",
                   "effectiveness review", **wait)
        await handle.execute_update(ActionItemWorkflow.verdict, VerdictInput(by=owner, effective=True, note="bench"))


# --------------------------------------------------------------------------- the run


@dataclass
class Figures:
    n: int
    seconds: float
    lifecycles_per_second: float
    mean_latency_seconds: float
    history_events_per_lifecycle: float
    activities_per_lifecycle: float
    timers_per_lifecycle: float
    timers_fired_per_lifecycle: float
    history_events_min: int
    history_events_max: int
    process_cpu_seconds_per_lifecycle: float
    server_cpu_seconds_per_lifecycle: float | None


def figures(n: int, wall: float, latencies: list[float], histories: list[History], cpu: Cpu) -> Figures:
    events = [h.events for h in histories]
    return Figures(
        n=n, seconds=round(wall, 3), lifecycles_per_second=round(n / wall, 3),
        mean_latency_seconds=round(statistics.fmean(latencies), 3),
        history_events_per_lifecycle=round(statistics.fmean(events), 2),
        activities_per_lifecycle=round(statistics.fmean(h.activities for h in histories), 2),
        timers_per_lifecycle=round(statistics.fmean(h.timers for h in histories), 2),
        timers_fired_per_lifecycle=round(statistics.fmean(h.timers_fired for h in histories), 2),
        history_events_min=min(events), history_events_max=max(events),
        process_cpu_seconds_per_lifecycle=round(cpu.process / n, 4),
        server_cpu_seconds_per_lifecycle=None if cpu.dev_server is None else round(cpu.dev_server / n, 4),
    )


def bench_config(tmp: Path, db_url: str, task_queue: str) -> Config:
    path = tmp / "closeloop.toml"
    path.write_text(f'data_dir = "{tmp / "data"}"\n' + BENCH_CONFIG + BENCH_POLICY)
    return load_config(path, env={"CLOSELOOP_TASK_QUEUE": task_queue, "CLOSELOOP_DB_URL": db_url})


async def bench(args: argparse.Namespace, db_url: str, tmp: Path) -> dict[str, Any]:
    run_tag = uuid.uuid4().hex[:8]
    task_queue, bare_queue = f"closeloop-bench-{run_tag}", f"bare-bench-{run_tag}"
    config = bench_config(tmp, db_url, task_queue)
    async with dev_server() as env:
        client = env.client
        server = server_pids()
        print(f"dev server up at {client.service_client.config.target_host}; store {_redact(db_url)}",
              file=sys.stderr, flush=True)

        # ---- closeloop
        integrations = build(config)
        driver = Driver(client, task_queue, args.items, run_tag, args.poll_interval, args.timeout)
        try:
            with ThreadPoolExecutor(max_workers=32, thread_name_prefix="closeloop-activity") as executor:
                async with build_worker(client, integrations, task_queue, executor=executor):
                    for w in range(args.warmup):
                        driver.run_tag = f"{run_tag}-warmup{w}"
                        await driver.lifecycle(0)
                    driver.run_tag = run_tag
                    QUERIES[0] = 0
                    with Cpu(server) as cpu:
                        summaries, wall, latencies = await run_many(args.n, args.concurrency, "closeloop",
                                                                    driver.lifecycle)
        finally:
            integrations.store.close()
        ids = [[s.postmortem_id, *(item.id for item in s.items)] for s in summaries]

        async def lifecycle_history(wf_ids: list[str]) -> History:
            total = History()
            for wf_id in wf_ids:
                total.add(await workflow_history(client, wf_id))
            return total

        histories = await gather_limited(args.concurrency, [lifecycle_history(i) for i in ids])
        closeloop = figures(args.n, wall, latencies, histories, cpu)
        queries = QUERIES[0]

        # ---- bare: the same number of activities and timers, same process, same server, same concurrency
        acts, timers = round(closeloop.activities_per_lifecycle), round(closeloop.timers_per_lifecycle)
        bare_ids: list[str] = []

        async def bare_one(i: int) -> int:
            wf_id = f"bench-bare-{run_tag}-{i}"
            bare_ids.append(wf_id)
            return await client.execute_workflow(BareWorkflow.run, BareInput(acts, timers), id=wf_id,
                                                 task_queue=bare_queue)

        with ThreadPoolExecutor(max_workers=32, thread_name_prefix="bare-activity") as executor:
            async with Worker(client, task_queue=bare_queue, workflows=[BareWorkflow], activities=[noop],
                              activity_executor=executor, max_concurrent_activities=32):
                for w in range(args.warmup):
                    await client.execute_workflow(BareWorkflow.run, BareInput(acts, timers),
                                                  id=f"bench-bare-{run_tag}-warmup{w}", task_queue=bare_queue)
                with Cpu(server) as bare_cpu:
                    _, bare_wall, bare_latencies = await run_many(args.n, args.concurrency, "bare", bare_one)
        bare_histories = await gather_limited(args.concurrency, [workflow_history(client, i) for i in bare_ids])
        bare = figures(args.n, bare_wall, bare_latencies, bare_histories, bare_cpu)

    return {
        "n": args.n, "concurrency": args.concurrency, "items": args.items, "warmup": args.warmup,
        "store": db_url.split(":", 1)[0].split("+", 1)[0], "poll_interval": args.poll_interval,
        "state_queries_per_lifecycle": round(queries / args.n, 1),
        "closeloop": asdict(closeloop), "bare": asdict(bare),
        "ratios": {
            "throughput": round(closeloop.lifecycles_per_second / bare.lifecycles_per_second, 4),
            "history": round(closeloop.history_events_per_lifecycle / bare.history_events_per_lifecycle, 4),
        },
    }


def table(r: dict[str, Any]) -> str:
    c, b, ratio = r["closeloop"], r["bare"], r["ratios"]
    rows = [
        ("lifecycles/s", "lifecycles_per_second", "{:.2f}"),
        ("history events/lifecycle", "history_events_per_lifecycle", "{:.1f}"),
        ("activities/lifecycle", "activities_per_lifecycle", "{:.1f}"),
        ("timers/lifecycle", "timers_per_lifecycle", "{:.1f}"),
        ("  of which fired", "timers_fired_per_lifecycle", "{:.1f}"),
        ("mean latency (s)", "mean_latency_seconds", "{:.3f}"),
        ("wall time (s)", "seconds", "{:.2f}"),
        ("CPU s/lifecycle, process", "process_cpu_seconds_per_lifecycle", "{:.3f}"),
        ("CPU s/lifecycle, server", "server_cpu_seconds_per_lifecycle", "{:.3f}"),
    ]
    lines = [
        f"closeloop benchmark: n={r['n']} concurrency={r['concurrency']} items={r['items']} "
        f"warmup={r['warmup']} store={r['store']} poll={r['poll_interval']}s "
        f"({r['state_queries_per_lifecycle']} state queries/lifecycle)",
        "",
        f"{'':26}{'closeloop':>12}{'bare':>12}",
    ]
    for label, key, fmt in rows:
        cv, bv = (fmt.format(x[key]) if x[key] is not None else "n/a" for x in (c, b))
        lines.append(f"{label:26}{cv:>12}{bv:>12}")
        if key == "history_events_per_lifecycle":
            cv, bv = (f"{x['history_events_min']}-{x['history_events_max']}" for x in (c, b))
            lines.append(f"{'  range':26}{cv:>12}{bv:>12}")
    lines += [
        "",
        f"throughput ratio (closeloop/bare): {ratio['throughput']:.3f}",
        f"history ratio    (closeloop/bare): {ratio['history']:.3f}",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- PostgreSQL


def create_pg_database(server_url: str) -> tuple[str, Callable[[], None]]:
    """A fresh database on the server the URL points at; returns its URL and a function that drops it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    if not url.drivername.startswith("postgresql"):
        raise BenchError(f"--db-url must be a PostgreSQL URL (SQLite is the default), not {url.drivername}")
    admin = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"closeloop_bench_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # noqa: BLE001
        admin.dispose()
        raise BenchError(f"cannot create a database on {_redact(server_url)}: {str(e).splitlines()[0]}") from e

    def drop() -> None:
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50, help="lifecycles (and bare workflows) to run (default 50)")
    ap.add_argument("--concurrency", type=int, default=20, help="lifecycles in flight at once (default 20)")
    ap.add_argument("--items", type=int, default=2, help="action items per postmortem (default 2)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed, uncounted runs of each kind before measuring (default 1)")
    ap.add_argument("--db-url", default=None,
                    help="a PostgreSQL server URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres: a "
                         "fresh database is created on that server and dropped afterwards (default: SQLite in a "
                         "temp dir)")
    ap.add_argument("--poll-interval", type=float, default=0.05,
                    help="seconds before the first re-poll of a state query; later ones back off to 0.5 s "
                         "(default 0.05)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for any one step (default 120)")
    ap.add_argument("--log-level", default="WARNING",
                    help="closeloop/SDK log level, logs go to stderr (default WARNING)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    args = ap.parse_args(argv)
    for name in ("n", "concurrency"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    if args.items < 0 or args.warmup < 0:
        ap.error("--items and --warmup cannot be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    closeloop_logging.configure(args.log_level, json=False, stream=sys.stderr)

    def run(on_exit: Cleanup) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="closeloop-bench-") as tmp:
            if args.db_url:
                db_url, drop = create_pg_database(args.db_url)
                on_exit("drop the benchmark database", drop)
            else:
                db_url = f"sqlite:///{Path(tmp) / 'closeloop.db'}"
            return asyncio.run(bench(args, db_url, Path(tmp)))

    return run_bench(run, table, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
