"""From a due reminder to the message where the person reads it: N lifecycles whose first draft reminders all
come due at the same instant, on the real Temporal dev server and a closeloop worker. Half the owners (alice)
are reached on Slack (closeloop's Slack stand-in on loopback, through slack-sdk), the other half (bob) by email
(a real SMTP server on loopback, aiosmtpd). For each reminder: the time from when it was due to when the SMTP
server had the whole message, or Slack had stored it.

How they come due at once: each reminder is planned `--every` after its lifecycle starts drafting (the starts
spread over seconds), and `[notify] working_hours` open at one instant T, `--lead` seconds after the run begins
(everyone in UTC; only reminders wait for working hours, `any_hour` lists the rest). So every reminder is due at
T, the instant the hours open, and they all go out together.

    python bench/reminders.py                    # 200 reminders, all due at once
    python bench/reminders.py --n 50 --json      # the figures as JSON on stdout

See bench/README.md. Progress goes to stderr; the figures to stdout. Exit 1 with one line on stderr when the
run cannot be made (the dev server is always stopped)."""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from _common import BENCH_CONFIG, BenchError, Cleanup, Cpu, dev_server, run_bench  # noqa: E402
from _common import child_pids as server_pids  # noqa: E402
from _faults import free_port  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402

from closeloop import logging as closeloop_logging  # noqa: E402
from closeloop.client import start_postmortem  # noqa: E402
from closeloop.config import load_config  # noqa: E402
from closeloop.integrations.registry import build  # noqa: E402
from closeloop.models import Incident, Stage  # noqa: E402
from closeloop.secrets import Secrets  # noqa: E402
from closeloop.standins.slack import SlackStandin  # noqa: E402
from closeloop.worker import build_worker  # noqa: E402
from closeloop.workflows.postmortem import PostmortemWorkflow  # noqa: E402

TOKEN = "xoxb-bench"
# Everything but the reminders goes out at once (the invites, the draft requests): only reminders wait for T.
ANY_HOUR = ("invite", "draft_requested", "published", "cancelled", "lifecycle_failed", "channel_failed")
OWNERS = ("alice", "bob")  # alice is on Slack, bob is not (email)

# The incidents (SEV2) get BENCH_CONFIG's policy with reminders every `--every` and drafts due in days, so the
# one thing that fires is each lifecycle's first reminder. Meetings fit any slot (nothing waits for one).
POLICY = """
[severity.SEV2]
reminder_every = "{every}s"

[severity.SEV2.meeting]
within_business_days = 30
duration = "15m"
slot_step = "15m"
working_hours = {{ start = 00:00:00, end = 23:59:00, days = [0, 1, 2, 3, 4, 5, 6] }}

[notifiers.slack]
base_url = "{slack_url}"
lookup_by_email = true

[notifiers.email]
host = "127.0.0.1"
port = {port}
security = "none"
from_address = "closeloop@example.com"
"""


class Mailbox:
    """The SMTP server's handler: each message's postmortem, kind and arrival time (wall clock)."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        at = time.time()
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        key = (str(message["X-Closeloop-Postmortem"]), str(message["X-Closeloop-Kind"]))
        with self.lock:
            self.arrivals.setdefault(key, at)
        return "250 OK"

    def count(self, kind: str) -> int:
        with self.lock:
            return sum(1 for _, k in self.arrivals if k == kind)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    run_tag = uuid.uuid4().hex[:8]
    task_queue = f"closeloop-reminders-{run_tag}"
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    slack = SlackStandin(token=TOKEN)
    slack.add_user("U0ALICE", "alice@example.com")  # bob is not on Slack: his reminders go by email
    slack.__enter__()
    try:
        path = tmp / "closeloop.toml"
        opens = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=args.lead)
        # BENCH_CONFIG ends with its [notify] table (whose `defer_to_working_hours = false` goes): the channels
        # and the working hours opening at `opens` go there, then the other tables. Everyone in UTC.
        people = re.sub(r'timezone = "[^"]*"', 'timezone = "UTC"', BENCH_CONFIG.rstrip("\n"))
        people = people.replace("defer_to_working_hours = false", "defer_to_working_hours = true")
        path.write_text(f'data_dir = "{tmp / "data"}"\n' + people + '\nchannels = ["slack", "email"]\n'
                        f'working_hours = {{ start = {opens:%H:%M:%S}, end = 23:59:59, days = {list(range(7))} }}\n'
                        f'any_hour = [{", ".join(repr(k).replace(chr(39), chr(34)) for k in ANY_HOUR)}]\n'
                        + POLICY.format(every=args.every, port=smtp.port, slack_url=slack.base_url))
        config = load_config(path, env={"CLOSELOOP_TASK_QUEUE": task_queue,
                                        "CLOSELOOP_DB_URL": f"sqlite:///{tmp / 'closeloop.db'}"})
        async with dev_server() as env:
            client = env.client
            server = server_pids()
            integrations = build(config, secrets=Secrets({"CLOSELOOP_SLACK_TOKEN": TOKEN}))
            try:
                with ThreadPoolExecutor(max_workers=32, thread_name_prefix="closeloop-activity") as executor, \
                        Cpu(server) as cpu:
                    async with build_worker(client, integrations, task_queue, executor=executor):
                        figures = await run(args, client, task_queue, run_tag, mailbox, slack, opens)
            finally:
                integrations.store.close()
    finally:
        smtp.stop()
        slack.__exit__(None, None, None)
    figures["cpu_seconds"] = {"bench_process": round(cpu.process, 1),
                              "dev_server": None if cpu.dev_server is None else round(cpu.dev_server, 1)}
    return figures


def slack_arrivals(slack: SlackStandin) -> dict[tuple[str, str], float]:
    """(postmortem id, kind) -> when Slack stored the message (its ts, from the stand-in's clock: wall time)."""
    found: dict[tuple[str, str], float] = {}
    for channel in list(slack.channels):
        for message in slack.messages(channel):
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("postmortem_id"):
                found.setdefault((payload["postmortem_id"], payload.get("kind", "")), float(message["ts"]))
    return found


async def run(args: argparse.Namespace, client: Any, task_queue: str, run_tag: str,
              mailbox: Mailbox, slack: SlackStandin, opens: datetime) -> dict[str, Any]:
    limit = asyncio.Semaphore(args.concurrency)

    async def start(i: int) -> str:
        incident = Incident(source="api", external_id=f"REM-{run_tag}-{i}", title=f"Checkout returns 500s ({i})",
                            severity="SEV2", services=[f"rem-{run_tag}-{i}"], commander=OWNERS[i % 2],
                            dedup_key=f"rem-{run_tag}-{i}")
        async with limit:
            started = await start_postmortem(client, task_queue, incident)
        return started.workflow_id

    print(f"starting {args.n} lifecycles...", file=sys.stderr, flush=True)
    ids = await asyncio.gather(*(start(i) for i in range(args.n)))
    due: dict[str, float] = {}
    deadline = time.monotonic() + args.timeout
    every = timedelta(seconds=args.every)
    while len(due) < len(ids):
        if time.monotonic() > deadline:
            raise BenchError(f"only {len(due)} of {len(ids)} lifecycles reached drafting in {args.timeout:.0f} s")
        for wid in ids:
            if wid in due:
                continue
            state = await client.get_workflow_handle_for(PostmortemWorkflow.run, wid).query(PostmortemWorkflow.state)
            if state is not None and state.stage == Stage.drafting and state.draft_chase is not None:
                due[wid] = (state.draft_chase.started_at + every).timestamp()
        await asyncio.sleep(0.2)
    planned = dict(due)
    print(f"all {len(ids)} drafting; first reminders planned within {max(due.values()) - min(due.values()):.1f} s, "
          f"all due at {opens:%H:%M:%S} UTC", file=sys.stderr, flush=True)
    if time.time() > opens.timestamp() or max(planned.values()) > opens.timestamp():
        raise BenchError(f"the working hours opened before every lifecycle was drafting and its reminder planned: "
                         f"use a longer --lead than {args.lead:g} s (or a shorter --every)")
    due = {wid: max(at, opens.timestamp()) for wid, at in planned.items()}  # the reminders wait for T
    def arrivals() -> dict[str, float]:
        found = {pm: at for (pm, kind), at in slack_arrivals(slack).items() if kind == "reminder"}
        found.update({pm: at for (pm, kind), at in list(mailbox.arrivals.items()) if kind == "reminder"})
        return found

    while len(arrived := arrivals()) < len(ids):
        if time.monotonic() > deadline:
            raise BenchError(f"only {len(arrived)} of {len(ids)} reminders arrived in {args.timeout:.0f} s")
        await asyncio.sleep(0.1)
    slack_ids = {pm for (pm, kind) in slack_arrivals(slack) if kind == "reminder"}

    def stats(wids: list[str]) -> dict[str, float]:
        ms = [round((arrived[w] - due[w]) * 1000, 1) for w in wids]
        return {"n": len(ms), "p50": pct(ms, 50), "p95": pct(ms, 95), "p99": pct(ms, 99), "max": max(ms),
                "min": min(ms), "mean": round(statistics.fmean(ms), 1)}

    return {
        "reminders": len(ids), "every_s": args.every,
        "due_spread_s": round(max(due.values()) - min(due.values()), 2),
        "planned_spread_s": round(max(planned.values()) - min(planned.values()), 2),
        "due_to_message_ms": {"all": stats(list(ids)), "slack": stats([w for w in ids if w in slack_ids]),
                              "email": stats([w for w in ids if w not in slack_ids])},
        "last_arrival_after_first_due_s": round(max(arrived[w] for w in ids) - min(due.values()), 2),
        "emails": len(mailbox.arrivals), "slack_messages": len(slack_arrivals(slack)),
    }


def table(r: dict[str, Any]) -> str:
    lines = [f"reminders                      {r['reminders']} (due within {r['due_spread_s']} s of each other; "
             f"planned over {r['planned_spread_s']} s)"]
    for name, label in (("all", "due -> message, ms"), ("slack", "  Slack DM"), ("email", "  SMTP mailbox")):
        m = r["due_to_message_ms"][name]
        lines.append(f"{label:<31}n {m['n']}  p50 {m['p50']}  p95 {m['p95']}  p99 {m['p99']}  max {m['max']}")
    return "\n".join([
        *lines,
        f"all delivered after           {r['last_arrival_after_first_due_s']} s from the first due time",
        f"CPU seconds                    bench process {r['cpu_seconds']['bench_process']}  dev server "
        f"{r['cpu_seconds']['dev_server']}",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="lifecycles, one first reminder each (default 200)")
    ap.add_argument("--every", type=float, default=5.0,
                    help="seconds from drafting to the first reminder (default 5)")
    ap.add_argument("--lead", type=float, default=90.0,
                    help="seconds from the start to the instant T the reminders all come due; every lifecycle "
                         "must be drafting, its reminder planned, by then (default 90)")
    ap.add_argument("--concurrency", type=int, default=50, help="lifecycles started at once (default 50)")
    ap.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds (default 300)")
    ap.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    ap.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = ap.parse_args(argv)
    if args.n < 1 or args.every <= 0 or args.concurrency < 1:
        ap.error("--n and --concurrency must be at least 1, --every positive")
    closeloop_logging.configure(args.log_level, json=False, stream=sys.stderr)

    def go(on_exit: Cleanup) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="closeloop-reminders-") as tmp:
            return asyncio.run(bench(args, Path(tmp)))

    return run_bench(go, table, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
