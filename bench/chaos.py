"""Faults at scale: N complete lifecycles on W worker processes (`python worker.py`, real activities, PostgreSQL
store, Jira tracker through the real client library against the Jira stand-in) while the run is attacked:

- random worker SIGKILLs (each killed worker is replaced at once), at least `--kills` of them;
- one kill -9 of the Temporal dev server (persistent SQLite file), started again `--temporal-down` s later;
- a PostgreSQL outage of `--pg-outage` s (a TCP proxy in front of the real server resets every connection and
  refuses new ones);
- the tracker failing (every Jira request 503) for `--tracker-outage` s.

    python bench/chaos.py                                 # 100 lifecycles, 2 workers, >= 20 kills, 60 s outages
    python bench/chaos.py --n 10 --kills 4 --pg-outage 10 --tracker-outage 10 --json   # the reduced form

Afterwards it checks what must hold: every lifecycle completes (closed, every item effective), exactly one
ticket per action item, no notification delivered twice, one meeting (and one invite per attendee) per
postmortem. Progress goes to stderr, the figures to stdout (a table, or JSON with --json). Exit 0 when every
check holds, 2 when the run finished but a check failed (the figures say which), 1 with one line on stderr
when the run could not be made. The tracker outage of "a simulated hour" runs in the test suite on the
time-skipping server (tests/workflows/test_tracker_outage.py): a dev server cannot skip time."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH_CONFIG,
    ROOT,
    BenchError,
    run_reporting_errors,
    stdout_to_stderr,
    temporal_binary,
)
from _faults import DevServerProcess, TcpProxy  # noqa: E402

T = TypeVar("T")

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
OWNER, REVIEWERS, ITEM_OWNERS = "alice", ("bob", "erin"), ("bob", "erin")
PEOPLE = ("alice", "bob", "erin", "carol", "dave")
JIRA_ENV = {"CLOSELOOP_JIRA_EMAIL": "bot@example.com", "CLOSELOOP_JIRA_API_TOKEN": "not-a-real-token"}

# bench/lifecycles.py's policy (nothing is chased: no reminder or escalation fires; the effectiveness review comes
# at once; a meeting slot is always free), with Jira as the tracker.
POLICY = """
[severity.SEV2]
tracker = "jira"
reminder_every = "1h"
effectiveness_delay = "1s"
recurrence_window = "1s"
verdict_timeout = "1h"

[severity.SEV2.meeting]
within_business_days = 30
duration = "15m"
slot_step = "15m"
working_hours = { start = 00:00:00, end = 23:59:00, days = [0, 1, 2, 3, 4, 5, 6] }
"""


def say(text: str) -> None:
    print(f"chaos +{time.monotonic() - T0:6.1f}s {text}", file=sys.stderr, flush=True)


T0 = time.monotonic()


# --------------------------------------------------------------------------- workers


@dataclass
class Workers:
    """W `python worker.py` processes; `kill_random()` SIGKILLs one and starts its replacement at once."""

    count: int
    env: dict[str, str]
    log_dir: Path
    procs: list[subprocess.Popen[bytes] | None] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    kills: int = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        path = self.log_dir / f"worker-{len(self.logs) + 1}.log"
        self.logs.append(path)
        with path.open("wb") as out:
            return subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def start(self) -> None:
        self.procs = [self._spawn() for _ in range(self.count)]

    def kill_random(self, rng: random.Random) -> None:
        slot = rng.randrange(self.count)
        proc = self.procs[slot]
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            self.kills += 1
        self.procs[slot] = self._spawn()

    def revive_dead(self) -> list[int]:
        """Like a supervisor (systemd's Restart=on-failure): start a replacement for any worker that exited by
        itself, e.g. one started during the database outage (exit 3: a service unreachable). Their exit codes."""
        codes = []
        for slot, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is not None:
                codes.append(int(proc.returncode))
                self.procs[slot] = self._spawn()
        return codes

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)

    def records(self, event: str) -> list[dict[str, Any]]:
        out = []
        for path in self.logs:
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{") and f'"{event}"' in line:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by SIGKILL
                    if record.get("event") == event:
                        out.append(record)
        return out


# --------------------------------------------------------------------------- the driver


async def retrying(what: str, call: Callable[[], Awaitable[T]], deadline: float) -> T:
    """`call()` until it succeeds: while a worker, the Temporal server or the store is down, calls fail or time
    out. A rejection by an Update's validator is a real failure and raised at once."""
    from temporalio.client import WorkflowUpdateFailedError

    delay = 0.2
    while True:
        try:
            return await asyncio.wait_for(call(), timeout=20)
        except WorkflowUpdateFailedError:
            raise
        except Exception as e:  # noqa: BLE001 - anything else is the chaos: try again
            if time.monotonic() > deadline:
                raise BenchError(f"{what}: still failing at the deadline: {type(e).__name__}: {e}") from None
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 2.0)


async def until(what: str, probe: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool], deadline: float) -> Any:
    delay = 0.2
    while True:
        try:
            value = await asyncio.wait_for(probe(), timeout=10)
            if value is not None and ok(value):
                return value
        except Exception:  # noqa: BLE001 - no worker to answer, server down: ask again
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"no {what} by the deadline")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 2.0)


@dataclass
class Driver:
    client: Any
    task_queue: str
    tag: str
    items: int
    deadline: float
    done: int = 0
    failures: list[str] = field(default_factory=list)

    async def lifecycle(self, i: int) -> Any:
        from closeloop.client import start_postmortem
        from closeloop.contract import action_item_workflow_id
        from closeloop.models import (
            ActionItemSpec,
            DraftSubmission,
            Incident,
            ReviewDecision,
            ReviewVote,
            Stage,
        )
        from closeloop.workflows.postmortem import PostmortemWorkflow

        incident = Incident(source="api", external_id=f"CHAOS-{self.tag}-{i}", title=f"Checkout returns 500s ({i})",
                            severity="SEV2", services=[f"chaos-{self.tag}-{i}"], commander=OWNER,
                            participants=["bob"], dedup_key=f"chaos-{self.tag}-{i}")
        started = await retrying(f"start {i}", lambda: start_postmortem(self.client, self.task_queue, incident),
                                 self.deadline)
        pm = started.workflow_id
        handle = self.client.get_workflow_handle_for(PostmortemWorkflow.run, pm)
        await until(f"{pm} drafting", lambda: handle.query(PostmortemWorkflow.state),
                    lambda s: s.stage == Stage.drafting, self.deadline)
        draft = DraftSubmission(by=OWNER, summary="Checkout failed for 40 minutes.", root_cause="A bad config push.",
                                action_items=[ActionItemSpec(title=f"Action item {k}", owner=ITEM_OWNERS[k % 2],
                                                             priority="P1" if k % 2 == 0 else "P2", kind="prevent")
                                              for k in range(self.items)])
        await retrying(f"{pm} draft", lambda: handle.execute_update(PostmortemWorkflow.submit_draft, draft,
                                                                    id="chaos-draft"), self.deadline)
        await until(f"{pm} in_review", lambda: handle.query(PostmortemWorkflow.state),
                    lambda s: s.stage == Stage.in_review, self.deadline)
        for reviewer in REVIEWERS:
            vote = ReviewVote(reviewer=reviewer, decision=ReviewDecision.approve)
            await retrying(f"{pm} review {reviewer}",
                           lambda v=vote, r=reviewer: handle.execute_update(PostmortemWorkflow.review, v,
                                                                            id=f"chaos-review-{r}"),
                           self.deadline)
        await asyncio.gather(*(self.item(action_item_workflow_id(pm, f"item-{k + 1}"), ITEM_OWNERS[k % 2])
                               for k in range(self.items)))
        summary = await retrying(f"{pm} result", handle.result, self.deadline)
        self.done += 1
        if self.done % 10 == 0:
            say(f"completed {self.done}")
        return summary

    async def item(self, item_id: str, owner: str) -> None:
        from closeloop.models import CompleteItem, VerdictInput
        from closeloop.workflows.action_item import ActionItemWorkflow

        handle = self.client.get_workflow_handle_for(ActionItemWorkflow.run, item_id)
        await until(f"{item_id} ticket", lambda: handle.query(ActionItemWorkflow.state),
                    lambda s: s.phase == "tracking" and bool(s.item.ticket_key), self.deadline)
        await retrying(f"{item_id} complete", lambda: handle.execute_update(
            ActionItemWorkflow.complete, CompleteItem(by=owner), id="chaos-complete"), self.deadline)
        await until(f"{item_id} effectiveness review", lambda: handle.query(ActionItemWorkflow.state),
                    lambda s: s.phase == "awaiting_verdict", self.deadline)
        await retrying(f"{item_id} verdict", lambda: handle.execute_update(
            ActionItemWorkflow.verdict, VerdictInput(by=owner, effective=True, note="chaos"), id="chaos-verdict"),
            self.deadline)


# --------------------------------------------------------------------------- the run


@dataclass
class Figures:
    lifecycles: int
    completed: int
    effective_items: int
    items: int
    seconds: float
    worker_kills: int
    worker_exits: list[int]
    temporal_restarts: int
    pg_outage_seconds: float
    tracker_outage_seconds: float
    tracker_requests_failed: int
    tickets: int
    duplicate_tickets: int
    missing_tickets: int
    notifications: int
    duplicate_notifications: int
    meetings: int
    duplicate_meetings: int
    duplicate_invites: int
    failures: list[str]

    @property
    def ok(self) -> bool:
        # A worker may exit by itself only as documented for an unreachable service (3), and be restarted.
        return (self.completed == self.lifecycles and self.effective_items == self.items
                and all(code == 3 for code in self.worker_exits)
                and not (self.duplicate_tickets or self.missing_tickets or self.duplicate_notifications
                         or self.duplicate_meetings or self.duplicate_invites or self.failures))


def make_database() -> tuple[str, Callable[[], None]]:
    import sqlalchemy as sa

    name = f"closeloop_chaos_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as e:  # noqa: BLE001
        raise BenchError(f"PostgreSQL on 127.0.0.1:5432 is needed: {type(e).__name__}: {e}") from None

    def drop() -> None:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return name, drop


async def chaos(args: argparse.Namespace, rng: random.Random, workers: Workers, server: DevServerProcess,
                proxy: TcpProxy, jira: Any, stop: asyncio.Event) -> tuple[dict[str, float], list[int]]:
    """The attack plan, on a clock from the start: a kill every `--kill-every` s until `--kills` are done, the
    tracker outage, the Temporal restart, the PostgreSQL outage; and a supervisor restarting any worker that
    exits by itself."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    did: dict[str, float] = {}
    exits: list[int] = []

    async def at(offset: float) -> bool:
        delay = start + offset - loop.time()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return False
            except TimeoutError:
                pass
        return not stop.is_set()

    async def kills() -> None:
        n = 0
        # Kills that land: a worker that had already exited (started while Temporal or the database was down,
        # exit 3) is only started again, and the next tick tries another kill.
        while workers.kills < args.kills and await at(args.kill_every * (n + 1)):
            await asyncio.to_thread(workers.kill_random, rng)
            n += 1
            if n % 5 == 0:
                say(f"{workers.kills} worker kills")

    async def tracker() -> None:
        # From `--tracker-at` s, as soon as closeloop talks to the tracker (before that, an outage hits nobody).
        if not (args.tracker_outage and await at(args.tracker_at)):
            return
        while not sum(jira.requests.values()):
            if not await at(loop.time() - start + 0.1):
                return
        say(f"tracker down for {args.tracker_outage:.0f}s")
        jira.outage(args.tracker_outage)
        did["tracker_outage"] = args.tracker_outage
        await at(loop.time() - start + args.tracker_outage)
        say("tracker back")

    async def temporal() -> None:
        if args.temporal_down >= 0 and await at(args.temporal_at):
            say("Temporal dev server kill -9")
            await asyncio.to_thread(server.restart, args.temporal_down)
            say("Temporal dev server started again")

    async def postgres() -> None:
        if args.pg_outage and await at(args.pg_at):
            say(f"PostgreSQL down for {args.pg_outage:.0f}s")
            await asyncio.to_thread(proxy.outage, args.pg_outage)
            did["pg_outage"] = args.pg_outage
            say("PostgreSQL back")

    async def watchdog() -> None:
        while await at(loop.time() - start + 1):
            for code in workers.revive_dead():
                exits.append(code)
                say(f"a worker exited by itself with {code}; started again")

    await asyncio.gather(kills(), tracker(), temporal(), postgres(), watchdog())
    return did, exits


async def run_async(args: argparse.Namespace) -> tuple[Figures, dict[str, Any]]:
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from closeloop.standins.jira import JiraStandin
    from closeloop.store.store import Store

    rng = random.Random(args.seed)
    tag = uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix="closeloop-chaos-"))
    dbname, drop_db = make_database()
    proxy = TcpProxy(("127.0.0.1", 5432)).start()
    worker_db = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/{dbname}"
    direct_db = f"postgresql+psycopg://postgres@127.0.0.1:5432/{dbname}"
    validator = None
    if args.validate:
        from closeloop.standins.spec import SPECS_DIR, ResponseValidator

        validator = ResponseValidator(SPECS_DIR / "jira-platform-v3.json").check
    jira = JiraStandin(project="CL", users={f"acc-{p}": p.title() for p in PEOPLE}, validator=validator).start()
    server = DevServerProcess(temporal_binary(), tmp / "temporal")
    workers: Workers | None = None
    store: Store | None = None
    try:
        server.start()
        task_queue = f"closeloop-chaos-{tag}"
        config = tmp / "closeloop.toml"
        handles = "".join(f'\n[people.{p}.handles]\njira = "acc-{p}"\n' for p in PEOPLE)
        config.write_text(f'data_dir = "{tmp / "data"}"\n' + BENCH_CONFIG + POLICY + handles
                          + f'\n[trackers.jira]\nurl = "{jira.url}"\nproject = "CL"\ntimeout = 5.0\n')
        store = Store(direct_db)  # migrated before any worker starts
        env = {**os.environ, "CLOSELOOP_CONFIG": str(config), "CLOSELOOP_TEMPORAL_ADDRESS": server.address,
               "CLOSELOOP_NAMESPACE": "default", "CLOSELOOP_TASK_QUEUE": task_queue, "CLOSELOOP_DB_URL": worker_db,
               "CLOSELOOP_METRICS_PORT": "0",  # several workers on this machine: no metrics port each
               "CLOSELOOP_DATA_DIR": str(tmp / "data"), "PYTHONUNBUFFERED": "1", **JIRA_ENV}
        workers = Workers(args.workers, env, tmp)
        workers.start()
        client = await Client.connect(server.address, namespace="default", data_converter=pydantic_data_converter)
        say(f"dev server {server.address}, {args.workers} workers, store {dbname} behind a proxy on :{proxy.port}, "
            f"Jira stand-in {jira.url}")
        t0 = time.monotonic()
        driver = Driver(client, task_queue, tag, args.items, deadline=t0 + args.timeout)
        stop = asyncio.Event()
        attack = asyncio.ensure_future(chaos(args, rng, workers, server, proxy, jira, stop))
        sem = asyncio.Semaphore(args.concurrency)

        async def one(i: int) -> Any:
            async with sem:
                try:
                    return await driver.lifecycle(i)
                except BenchError as e:
                    driver.failures.append(str(e))
                    return None

        summaries = await asyncio.gather(*(one(i) for i in range(args.n)))
        seconds = time.monotonic() - t0
        stop.set()
        did, exits = await attack
        say(f"all lifecycles ended in {seconds:.0f}s; checking")

        # ---- what must hold
        completed = [s for s in summaries if s is not None and s.stage.value == "closed"]
        effective = sum(1 for s in completed for item in s.items if item.verdict and item.verdict.value == "effective")
        markers = Counter(m.group(1) for issue in jira.issues.values()
                          if (m := re.search(r"closeloop:(\S+?/item-\d+)", issue.get("description") or "")))
        expected_items = {f"postmortem/api/CHAOS-{tag}-{i}/item-{k + 1}" for i in range(args.n)
                          for k in range(args.items)}
        ours = {m: c for m, c in markers.items() if m in expected_items}
        rows = store.local.notifications()
        logged = Counter((r.get("kind"), r.get("to"), r.get("item_id"), r.get("event_time"))
                         for r in workers.records("notification"))
        import sqlalchemy as sa

        # A meeting's title names its incident, unique per lifecycle here: a second booking for one postmortem
        # (under any key) shows up as a repeated title. Invites are notifications: a repeated log line.
        with store.db.engine.connect() as c:
            meetings_per_pm = Counter(t for (t,) in c.execute(sa.text("SELECT title FROM local_meetings")))
        figures = Figures(
            lifecycles=args.n, completed=len(completed), effective_items=effective, items=args.n * args.items,
            seconds=round(seconds, 1), worker_kills=workers.kills, worker_exits=exits,
            temporal_restarts=server.restarts, pg_outage_seconds=did.get("pg_outage", 0.0),
            tracker_outage_seconds=did.get("tracker_outage", 0.0),
            tracker_requests_failed=jira.outage_failures,
            tickets=sum(ours.values()), duplicate_tickets=sum(c - 1 for c in ours.values()),
            missing_tickets=len(expected_items - set(ours)),
            notifications=len(rows), duplicate_notifications=sum(c - 1 for c in logged.values() if c > 1),
            meetings=sum(meetings_per_pm.values()),
            duplicate_meetings=sum(c - 1 for c in meetings_per_pm.values() if c > 1),
            duplicate_invites=sum(c - 1 for key, c in logged.items() if c > 1 and key[0] == "invite"),
            failures=driver.failures[:10],
        )
        extra = {"seed": args.seed, "workers": args.workers, "proxy_connections": proxy.connections,
                 "logs": str(tmp)}
        return figures, extra
    finally:
        if workers is not None:
            workers.stop()
        server.stop()
        jira.stop()
        proxy.close()
        if store is not None:
            store.close()
        drop_db()


def table(f: Figures, extra: dict[str, Any]) -> str:
    rows = [
        ("lifecycles completed", f"{f.completed}/{f.lifecycles} ({100 * f.completed / f.lifecycles:.0f}%)"),
        ("items effective", f"{f.effective_items}/{f.items}"),
        ("wall time", f"{f.seconds:.0f} s"),
        ("worker SIGKILLs", str(f.worker_kills)),
        ("workers that exited by themselves (exit codes)", ", ".join(map(str, f.worker_exits)) or "none"),
        ("Temporal dev server kill -9 + restart", str(f.temporal_restarts)),
        ("PostgreSQL outage", f"{f.pg_outage_seconds:.0f} s"),
        ("tracker outage (every request 503)", f"{f.tracker_outage_seconds:.0f} s"),
        ("tickets / duplicates / missing", f"{f.tickets} / {f.duplicate_tickets} / {f.missing_tickets}"),
        ("notifications / duplicates", f"{f.notifications} / {f.duplicate_notifications}"),
        ("meetings / duplicate meetings / duplicate invites",
         f"{f.meetings} / {f.duplicate_meetings} / {f.duplicate_invites}"),
    ]
    width = max(len(k) for k, _ in rows)
    out = [f"{k:<{width}}  {v}" for k, v in rows]
    if f.failures:
        out += ["failures:", *(f"  {x}" for x in f.failures)]
    out.append("OK: every check holds" if f.ok else "FAILED: a check does not hold")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=100, help="lifecycles (default 100)")
    p.add_argument("--items", type=int, default=2, help="action items per lifecycle (default 2)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--concurrency", type=int, default=25, help="lifecycles driven at once (default 25)")
    p.add_argument("--kills", type=int, default=20, help="worker SIGKILLs at least (default 20)")
    p.add_argument("--kill-every", type=float, default=6.0, help="seconds between worker kills (default 6)")
    p.add_argument("--temporal-at", type=float, default=40.0, help="when the dev server is killed (s, default 40)")
    p.add_argument("--temporal-down", type=float, default=5.0,
                   help="seconds it stays down (default 5; negative: no restart)")
    p.add_argument("--pg-at", type=float, default=70.0, help="when PostgreSQL goes down (s, default 70)")
    p.add_argument("--pg-outage", type=float, default=60.0, help="seconds PostgreSQL is down (default 60; 0: none)")
    p.add_argument("--tracker-at", type=float, default=15.0,
                   help="when the tracker goes down (s, default 15; or later, when closeloop first calls it)")
    p.add_argument("--tracker-outage", type=float, default=60.0, help="seconds it fails (default 60; 0: none)")
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds the whole run may take (default 1200)")
    p.add_argument("--seed", type=int, default=None, help="random seed of the kills (default: random)")
    p.add_argument("--validate", action="store_true", help="validate every Jira stand-in answer against the spec")
    p.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    args.kills_wanted = args.kills

    def go() -> dict[str, Any]:
        with stdout_to_stderr():  # the Temporal client's own log lines: stdout carries only the figures
            figures, extra = asyncio.run(run_async(args))
        return {"figures": figures, "extra": extra}

    result = run_reporting_errors(go)
    if isinstance(result, int):
        return result
    figures, extra = result["figures"], result["extra"]
    enough_kills = figures.worker_kills >= args.kills
    if args.json:
        print(json.dumps({**asdict(figures), **extra, "ok": figures.ok and enough_kills}, indent=2))
    else:
        print(table(figures, extra))
        if not enough_kills:
            print(f"only {figures.worker_kills} of the {args.kills} kills asked for happened before the run ended")
    return 0 if figures.ok and enough_kills else 2


if __name__ == "__main__":
    threading.current_thread().name = "chaos"
    sys.exit(main())
