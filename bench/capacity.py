"""A capacity model, measured: one `python worker.py` process on the real Temporal dev server with a PostgreSQL store.

1. lifecycles per worker CPU: N complete lifecycles (bench/lifecycles.py's driver and policy), the worker process's
   own CPU seconds (/proc) -> lifecycles per CPU-second and per CPU-hour;
2. Temporal history per lifecycle: events and bytes of the postmortem workflow's history and of its action items';
3. database growth per 1,000 postmortems: bytes by table (pg_total_relation_size after VACUUM FULL, as
   bench/db_growth.py measures) before and after the N lifecycles, scaled to 1,000;
4. worker memory with many open action items: `--open-items` ActionItemWorkflows started with the client (due in 30
   days: each opens its ticket, tells its owner, and waits on its first reminder's timer), then the worker's RSS;
   then, for each `--cache-sizes` entry, a fresh worker with that sticky cache ([temporal] max_cached_workflows)
   queries every open item once (each query replays the item into the cache) and its RSS is read.

    python bench/capacity.py                                  # 100 lifecycles, 10,000 open items, caches 100,1000,10000
    python bench/capacity.py --n 20 --open-items 1000 --json  # a quick run

Progress goes to stderr, the table (or JSON) to stdout; exit 1 with one line on stderr when anything fails. The
dev server is stopped, the workers are stopped and the database is dropped at the end. See bench/README.md."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from _common import BenchError, Cleanup, cpu_seconds, dev_server, run_bench  # noqa: E402
from _common import child_pids as server_pids  # noqa: E402
from db_growth import table_sizes  # noqa: E402
from lifecycles import Driver, bench_config, create_pg_database, gather_limited, run_many  # noqa: E402
from temporalio.client import Client  # noqa: E402

from closeloop import logging as closeloop_logging  # noqa: E402
from closeloop.cli.dev import stop_process  # noqa: E402
from closeloop.contract import action_item_workflow_id  # noqa: E402
from closeloop.models import ActionItem, ActionItemInput, Incident  # noqa: E402
from closeloop.planning import policy_for  # noqa: E402
from closeloop.store.store import Store  # noqa: E402
from closeloop.workflows.action_item import ActionItemWorkflow  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ITEMS_PER_POSTMORTEM = 5  # the open items belong to postmortems of five items each (rows in the store)
OWNERS = ("bob", "erin", "alice", "carol", "dave")


def say(text: str) -> None:
    print(f"capacity: {text}", file=sys.stderr, flush=True)


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB: its resident memory now, and the most it ever had."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


# --------------------------------------------------------------------------- the worker process


@dataclass
class WorkerProcess:
    """One `python worker.py` (the real entry point: its own process, its GC tuning, 32 activity threads), with
    its log in a file."""

    env: dict[str, str]
    log: Path
    cpython_gc: bool = False
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> WorkerProcess:
        # --cpython-gc: the same entry point without closeloop.worker.tune_gc (nothing frozen, CPython's thresholds)
        untuned = "import closeloop.worker as w; w.tune_gc = lambda *a, **k: None; w.exit_now(w.main())"
        cmd = [sys.executable, "-c", untuned] if self.cpython_gc else [sys.executable, "worker.py"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while b'"worker started"' not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise BenchError(f"the worker did not start (exit {self.proc.poll()}): {tail}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 30)


# --------------------------------------------------------------------------- histories


@dataclass
class Sizes:
    events: list[int] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)

    def add(self, events: int, size: int) -> None:
        self.events.append(events)
        self.bytes.append(size)

    def summary(self) -> dict[str, float]:
        if not self.events:
            return {}
        return {"events_median": statistics.median(self.events), "events_max": max(self.events),
                "bytes_median": statistics.median(self.bytes), "bytes_max": max(self.bytes)}


async def history_size(client: Client, workflow_id: str) -> tuple[int, int]:
    """Events and bytes (the serialised HistoryEvent protos, as the server stores them) of every run."""
    events = size = 0
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        events += len(history.events)
        size += sum(e.ByteSize() for e in history.events)
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return events, size
        run_id = started.continued_execution_run_id


# --------------------------------------------------------------------------- the phases


async def lifecycles_phase(args: argparse.Namespace, client: Client, task_queue: str, store: Store,
                           worker: WorkerProcess, server: list[int], tag: str) -> dict[str, Any]:
    driver = Driver(client, task_queue, args.items, tag, args.poll_interval, args.timeout)
    for w in range(args.warmup):
        driver.run_tag = f"{tag}-warmup{w}"
        await driver.lifecycle(0)
    driver.run_tag = tag
    before = table_sizes(store.engine)
    cpu0, srv0 = worker.cpu(), sum(cpu_seconds(p) for p in server)
    peak = [0]
    sampler = asyncio.ensure_future(sample_connections(store, peak))
    try:
        summaries, wall, _ = await run_many(args.n, args.concurrency, "lifecycles", driver.lifecycle)
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    cpu = worker.cpu() - cpu0
    srv = sum(cpu_seconds(p) for p in server) - srv0
    rss, hwm = memory_kib(worker.pid)
    after = table_sizes(store.engine)

    pm, items, total = Sizes(), Sizes(), Sizes()

    async def one(summary: Any) -> None:
        e, b = await history_size(client, summary.postmortem_id)
        pm.add(e, b)
        te, tb = e, b
        for item in summary.items:
            e, b = await history_size(client, item.id)
            items.add(e, b)
            te, tb = te + e, tb + b
        total.add(te, tb)

    await gather_limited(10, [one(s) for s in summaries])
    scale = 1000 / args.n
    growth = {t: round((after[t] - before[t]) * scale) for t in after if after[t] != before[t]}
    return {
        "n": args.n, "concurrency": args.concurrency, "items": args.items, "wall_seconds": round(wall, 1),
        "lifecycles_per_second": round(args.n / wall, 3),
        "worker_cpu_seconds": round(cpu, 2), "worker_cpu_seconds_per_lifecycle": round(cpu / args.n, 4),
        "lifecycles_per_worker_cpu_second": round(args.n / cpu, 3),
        "lifecycles_per_worker_cpu_hour": round(3600 * args.n / cpu),
        "dev_server_cpu_seconds_per_lifecycle": round(srv / args.n, 4),
        "worker_db_connections_peak": peak[0],
        "worker_rss_mib": round(rss / 1024, 1), "worker_peak_rss_mib": round(hwm / 1024, 1),
        "history": {"postmortem": pm.summary(), "action_item": items.summary(), "lifecycle": total.summary()},
        "db_growth_bytes_per_1000": dict(sorted(growth.items(), key=lambda kv: -kv[1])),
        "db_growth_total_bytes_per_1000": sum(growth.values()),
        "db_bytes_before": sum(before.values()), "db_bytes_after": sum(after.values()),
    }


async def open_items_phase(args: argparse.Namespace, client: Client, task_queue: str, store: Store,
                           config_path: Path, tag: str, make_worker: Callable[[int, str], WorkerProcess]
                           ) -> dict[str, Any]:
    from closeloop.config import load_config

    config = load_config(config_path, env={})
    n = args.open_items
    now = datetime.now(UTC)
    incidents = [Incident(source="api", external_id=f"CAP-{tag}-{p}", title=f"Checkout returns 500s ({p})",
                          severity="SEV2", services=["capacity"], commander="alice", participants=["bob"],
                          started_at=now - timedelta(hours=3), resolved_at=now - timedelta(hours=2))
                 for p in range(-(-n // ITEMS_PER_POSTMORTEM))]
    policy = policy_for(config, "SEV2", "capacity")
    t = time.perf_counter()
    for inc in incidents:  # the items' postmortems, as their lifecycles would have left them
        store.records.upsert_postmortem(inc.workflow_id, inc, owner="alice", stage="following_up", stalled=False,
                                        stage_due_at=None)
    say(f"{len(incidents)} postmortems in the store in {time.perf_counter() - t:.1f}s")
    inputs = []
    for k in range(n):
        inc = incidents[k // ITEMS_PER_POSTMORTEM]
        item_id = action_item_workflow_id(inc.workflow_id, f"item-{k % ITEMS_PER_POSTMORTEM + 1}")
        item = ActionItem(id=item_id, postmortem_id=inc.workflow_id, title=f"Validate config before push ({k})",
                          owner=OWNERS[k % len(OWNERS)], priority="P2", due_at=now + timedelta(days=30))
        inputs.append(ActionItemInput(item=item, policy=policy, incident=inc, postmortem_owner="alice"))

    worker = make_worker(args.start_cache, "open")
    out: dict[str, Any] = {"open_items": n, "start_cache": args.start_cache, "start_window": args.start_window}
    try:
        rss0, _ = memory_kib(worker.pid)
        cpu0 = worker.cpu()
        already = count_opened(store)  # the lifecycles' items
        t = time.perf_counter()
        opened = 0
        # Started in waves, at most --start-window not yet opened at a time: all at once, the first workflow
        # tasks of thousands of items would queue ahead of each item's next task, and with fewer cached
        # workflows than items every item would be evicted and replayed at each of its steps.
        for first in range(0, n, args.start_window // 2 or 1):
            while first - opened >= args.start_window:
                await asyncio.sleep(0.5)
                opened = count_opened(store) - already
            wave = inputs[first:first + (args.start_window // 2 or 1)]
            await gather_limited(50, [client.start_workflow(ActionItemWorkflow.run, inp, id=inp.item.id,
                                                            task_queue=task_queue) for inp in wave])
            if (first // (args.start_window // 2 or 1)) % 10 == 0:
                rss = memory_kib(worker.pid)[0]
                say(f"{first + len(wave)}/{n} started, {opened} opened (ticket, owner told); worker RSS "
                    f"{rss / 1024:.0f} MiB")
        started = time.perf_counter() - t
        while opened < n:
            await asyncio.sleep(1)
            opened = count_opened(store) - already
            if time.perf_counter() - t > args.timeout * 100:
                raise BenchError(f"only {opened} of {n} items opened after {time.perf_counter() - t:.0f}s")
        await asyncio.sleep(5)  # the last items' workflow task after their notification: the reminder timer
        wall = time.perf_counter() - t
        rss, hwm = memory_kib(worker.pid)
        out.update({"idle_rss_mib": round(rss0 / 1024, 1), "start_seconds": round(started, 1),
                    "open_seconds": round(wall, 1), "items_opened_per_second": round(n / wall, 1),
                    "worker_cpu_seconds_per_item": round((worker.cpu() - cpu0) / n, 4),
                    "rss_mib": round(rss / 1024, 1), "peak_rss_mib": round(hwm / 1024, 1)})
        say(f"opened in {wall:.0f}s; RSS {rss / 1024:.0f} MiB, peak {hwm / 1024:.0f} MiB")
    finally:
        worker.stop()

    caches = []
    for size in args.cache_sizes:
        worker = make_worker(size, f"cache{size}")
        try:
            rss0, _ = memory_kib(worker.pid)
            t = time.perf_counter()
            await gather_limited(32, [query(client, inp.item.id) for inp in inputs])
            wall = time.perf_counter() - t
            await asyncio.sleep(2)
            rss, hwm = memory_kib(worker.pid)
            caches.append({"max_cached_workflows": size, "idle_rss_mib": round(rss0 / 1024, 1),
                           "rss_mib": round(rss / 1024, 1), "peak_rss_mib": round(hwm / 1024, 1),
                           "query_seconds": round(wall, 1)})
            say(f"cache {size}: every item queried in {wall:.0f}s; RSS {rss / 1024:.0f} MiB, peak {hwm / 1024:.0f} MiB")
        finally:
            worker.stop()
    out["caches"] = caches
    return out


async def sample_connections(store: Store, peak: list[int]) -> None:
    """The most connections to the benchmark's database at once (pg_stat_activity, every 0.2 s), but this
    process's own (application_name "capacity-bench"): the worker's."""
    from sqlalchemy import text

    query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                 "AND application_name <> 'capacity-bench'")

    def once() -> int:
        with store.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    while True:
        peak[0] = max(peak[0], await asyncio.to_thread(once))
        await asyncio.sleep(0.2)


async def query(client: Client, workflow_id: str) -> None:
    """The item's state Query: the worker replays the item into its cache to answer. Tried again if a busy
    worker lets it time out."""
    handle = client.get_workflow_handle_for(ActionItemWorkflow.run, workflow_id)
    for attempt in range(5):
        try:
            await handle.query(ActionItemWorkflow.state)
            return
        except Exception as e:  # noqa: BLE001
            if attempt == 4:
                raise BenchError(f"{workflow_id}: the state query failed 5 times: {e}") from e
            await asyncio.sleep(1)


def count_opened(store: Store) -> int:
    from sqlalchemy import func, select

    from closeloop.store.tables import NotificationRow

    with store.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(NotificationRow)
                            .where(NotificationRow.kind == "item_opened")) or 0)


async def bench(args: argparse.Namespace, db_url: str, tmp: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    task_queue = f"closeloop-capacity-{tag}"
    bench_config(tmp, db_url, task_queue)  # writes tmp/closeloop.toml
    config_path = tmp / "closeloop.toml"
    from sqlalchemy.engine import make_url

    # migrated before any worker starts; its connections are named, so the worker's can be counted apart
    store = Store(make_url(db_url).update_query_dict({"application_name": "capacity-bench"})
                  .render_as_string(hide_password=False))
    workers: list[WorkerProcess] = []
    try:
        async with dev_server() as env:
            server = server_pids()
            client = env.client
            address = client.service_client.config.target_host
            say(f"dev server up at {address}; logs in {tmp}")

            def make_worker(cache: int, name: str) -> WorkerProcess:
                worker_env = {**os.environ, "CLOSELOOP_CONFIG": str(config_path), "CLOSELOOP_TEMPORAL_ADDRESS": address,
                              "CLOSELOOP_NAMESPACE": "default", "CLOSELOOP_TASK_QUEUE": task_queue,
                              "CLOSELOOP_DB_URL": db_url, "CLOSELOOP_DATA_DIR": str(tmp / "data"),
                              "CLOSELOOP_MAX_CACHED_WORKFLOWS": str(cache), "PYTHONUNBUFFERED": "1"}
                worker = WorkerProcess(worker_env, tmp / f"worker-{name}.log", cpython_gc=args.cpython_gc)
                workers.append(worker)
                return worker.start()

            result: dict[str, Any] = {"cpus": os.cpu_count(), "store": "postgresql", "cpython_gc": args.cpython_gc}
            if args.n:
                worker = make_worker(1000, "lifecycles")
                try:
                    result["lifecycles"] = await lifecycles_phase(args, client, task_queue, store, worker, server, tag)
                finally:
                    worker.stop()
            if args.open_items:
                result["memory"] = await open_items_phase(args, client, task_queue, store, config_path, tag,
                                                          make_worker)
            return result
    finally:
        for w in workers:
            w.stop()
        store.close()


# --------------------------------------------------------------------------- output


def table(r: dict[str, Any]) -> str:
    out = [f"capacity on {r['cpus']} CPUs, one worker process, PostgreSQL store, Temporal dev server"]
    if lc := r.get("lifecycles"):
        h = lc["history"]
        out += [
            "",
            f"lifecycles: n={lc['n']} concurrency={lc['concurrency']} items={lc['items']}",
            f"  wall time                          {lc['wall_seconds']:>10} s "
            f"({lc['lifecycles_per_second']} lifecycles/s)",
            f"  worker CPU per lifecycle           {lc['worker_cpu_seconds_per_lifecycle']:>10} s",
            f"  lifecycles per worker CPU-second   {lc['lifecycles_per_worker_cpu_second']:>10}",
            f"  lifecycles per worker CPU-hour     {lc['lifecycles_per_worker_cpu_hour']:>10}",
            f"  dev server CPU per lifecycle       {lc['dev_server_cpu_seconds_per_lifecycle']:>10} s",
            f"  worker RSS after / peak            {lc['worker_rss_mib']:>10} / {lc['worker_peak_rss_mib']} MiB",
            f"  worker DB connections, peak        {lc['worker_db_connections_peak']:>10}",
            "",
            f"  history                {'events median':>14}{'max':>8}{'bytes median':>14}{'max':>10}",
        ]
        for name in ("postmortem", "action_item", "lifecycle"):
            s = h[name]
            if s:
                out.append(f"  {name:<22}{s['events_median']:>14}{s['events_max']:>8}{s['bytes_median']:>14.0f}"
                           f"{s['bytes_max']:>10}")
        out += ["", f"  database growth per 1,000 postmortems: {lc['db_growth_total_bytes_per_1000'] / 2**20:.1f} MiB"]
        for t, b in lc["db_growth_bytes_per_1000"].items():
            out.append(f"    {t:<24}{b / 2**20:>10.2f} MiB")
    if mem := r.get("memory"):
        out += [
            "",
            f"worker memory with {mem['open_items']} open action items (started with max_cached_workflows="
            f"{mem['start_cache']}):",
            f"  idle before                        {mem['idle_rss_mib']:>10} MiB",
            f"  after all opened (RSS / peak)      {mem['rss_mib']:>10} / {mem['peak_rss_mib']} MiB",
            f"  opened in                          {mem['open_seconds']:>10} s ({mem['items_opened_per_second']}/s, "
            f"{mem['worker_cpu_seconds_per_item']} worker CPU s each)",
            "",
            f"  {'max_cached_workflows':<22}{'idle MiB':>10}{'RSS MiB':>10}{'peak MiB':>10}{'query all (s)':>15}",
        ]
        for c in mem["caches"]:
            out.append(f"  {c['max_cached_workflows']:<22}{c['idle_rss_mib']:>10}{c['rss_mib']:>10}"
                       f"{c['peak_rss_mib']:>10}{c['query_seconds']:>15}")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="complete lifecycles to run (default 100; 0: skip)")
    ap.add_argument("--concurrency", type=int, default=20, help="lifecycles in flight at once (default 20)")
    ap.add_argument("--items", type=int, default=2, help="action items per lifecycle (default 2)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed lifecycles first (default 1)")
    ap.add_argument("--open-items", type=int, default=10_000, help="open action items for the memory figure "
                    "(default 10000; 0: skip)")
    ap.add_argument("--start-cache", type=int, default=250,
                    help="max_cached_workflows of the worker that opens the items (default 250, the worker's)")
    ap.add_argument("--start-window", type=int, default=200,
                    help="at most this many items started and not yet opened at a time (default 200)")
    ap.add_argument("--cache-sizes", default="100,1000,10000",
                    help="max_cached_workflows of the workers that then query every item (default 100,1000,10000)")
    ap.add_argument("--cpython-gc", action="store_true",
                    help="run the workers without closeloop.worker.tune_gc (nothing frozen at start; on SQLite also "
                         "CPython's collector thresholds)")
    ap.add_argument("--pg-url", default=DEFAULT_PG, help="a PostgreSQL server URL: a fresh database is created on it "
                    "and dropped at the end")
    ap.add_argument("--poll-interval", type=float, default=0.05, help="the driver's first state re-poll (s)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds any one step may take (default 120)")
    ap.add_argument("--log-level", default="WARNING", help="this process's closeloop/SDK logs, on stderr")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    args = ap.parse_args(argv)
    args.cache_sizes = [int(x) for x in args.cache_sizes.split(",") if x.strip()]
    if args.n < 0 or args.open_items < 0 or args.concurrency < 1 or args.start_window < 2 \
            or any(c < 1 for c in args.cache_sizes):
        ap.error("--n and --open-items cannot be negative, --concurrency and cache sizes must be at least 1, "
                 "--start-window at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    closeloop_logging.configure(args.log_level, json=False, stream=sys.stderr)

    def run(on_exit: Cleanup) -> dict[str, Any]:
        tmp = Path(tempfile.mkdtemp(prefix="closeloop-capacity-"))
        db_url, drop = create_pg_database(args.pg_url)
        on_exit("drop the benchmark database", drop)
        return asyncio.run(bench(args, db_url, tmp))

    return run_bench(run, table, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
