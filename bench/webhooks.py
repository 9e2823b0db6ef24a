"""Load on the PagerDuty webhook: correctly signed v3 `incident.resolved` deliveries, sent open-loop at a
fixed rate to the web app under uvicorn (`closeloop serve`, its own process) on loopback, with the Temporal
dev server and a closeloop worker (`closeloop worker`, its own process) behind it. Every incident is
delivered twice, the duplicate at a random later time. The app answers once the incident is in its inbox
(the store) and its forwarder starts the lifecycles; afterwards, with the app still running, Temporal's
visibility must count exactly one lifecycle per incident, and the inbox must hold nothing pending.

    python bench/webhooks.py                          # 200 requests/s for 30 s
    python bench/webhooks.py --rate 50 --seconds 10   # a quick sanity check
    python bench/webhooks.py --json                   # the figures as JSON on stdout

Open-loop: request k is due at k/rate seconds after the start whether or not earlier ones have been
answered, and its latency is measured from that due time, so a slow server (or a full connection pool)
shows up as latency instead of lowering the rate. See bench/README.md. Progress and the servers' logs go to
stderr and files; stdout carries only the figures. Exit 1 with one line on stderr when the run cannot be
made; exit 2 when it ran but the lifecycles started do not match the incidents (the figures are printed)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import hmac
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from _common import (  # noqa: E402
    BENCH_CONFIG,  # noqa: E402
    ROOT,
    BenchError,
    cpu_seconds,
    run_reporting_errors,
    temporal_binary,
    venv_binary,
)
from _faults import DevServerProcess, free_port  # noqa: E402
from temporalio.api.enums.v1 import TaskQueueType  # noqa: E402
from temporalio.api.taskqueue.v1 import TaskQueue  # noqa: E402
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402

from closeloop.cli.dev import stop_process  # noqa: E402

SECRET = "bench-pagerduty-signing-secret"  # a throwaway secret for this run's own server
SERVICES = ["checkout", "search", "payments", "identity", "billing"]
PRIORITIES = ["P1", "P2", "P3"]  # no P4: BENCH_CONFIG skips SEV4 postmortems, every incident gets a lifecycle


# --------------------------------------------------------------------------- payloads


def envelope(incident_id: str, n: int, rng: random.Random) -> dict[str, Any]:
    """A v3 `incident.resolved` webhook, shaped as PagerDuty documents it (shared/specs/pagerduty-webhooks)."""
    created = f"2026-11-2{rng.randint(0, 1)}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
    return {"event": {
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "event_type": "incident.resolved",
        "resource_type": "incident",
        "occurred_at": "2026-11-22T08:45:22.169Z",
        "agent": {"id": "PLH1HKV", "type": "user_reference", "summary": "Tenex Engineer",
                  "self": "https://api.pagerduty.com/users/PLH1HKV",
                  "html_url": "https://acme.pagerduty.com/users/PLH1HKV"},
        "client": {"name": "PagerDuty"},
        "data": {
            "id": incident_id, "type": "incident", "number": n, "status": "resolved",
            "self": f"https://api.pagerduty.com/incidents/{incident_id}",
            "html_url": f"https://acme.pagerduty.com/incidents/{incident_id}",
            "incident_key": uuid.UUID(int=rng.getrandbits(128)).hex,
            "created_at": created,
            "title": f"Error rate above threshold on {rng.choice(SERVICES)} (#{n})",
            "service": {"id": "PF9KMXH", "type": "service_reference", "summary": rng.choice(SERVICES),
                        "self": "https://api.pagerduty.com/services/PF9KMXH",
                        "html_url": "https://acme.pagerduty.com/services/PF9KMXH"},
            "assignees": [{"id": "PTUXL6G", "type": "user_reference", "summary": "User 123"}],
            "escalation_policy": {"id": "PUS0KTE", "type": "escalation_policy_reference", "summary": "Default"},
            "teams": [{"id": "PFCVPS0", "type": "team_reference", "summary": "Engineering"}],
            "priority": {"id": "PSO75BM", "type": "priority_reference", "summary": rng.choice(PRIORITIES)},
            "urgency": rng.choice(["high", "low"]),
            "conference_bridge": None,
            "resolve_reason": None,
        },
    }}


@dataclass
class Delivery:
    incident: int
    body: bytes
    headers: dict[str, str]


def deliveries(n_incidents: int, run_tag: str, rng: random.Random) -> tuple[list[Delivery], list[str]]:
    """Two identical deliveries per incident (PagerDuty's retry resends the same bytes), in a random order:
    each incident's second delivery comes at a random later time (sometimes right after the first, while
    it is still being answered). Returns the deliveries in send order and the incidents' workflow ids."""
    per_incident: list[tuple[bytes, dict[str, str]]] = []
    ids = []
    for i in range(n_incidents):
        incident_id = f"PB{run_tag}{i:06d}"
        body = json.dumps(envelope(incident_id, i + 1, rng)).encode()
        signature = "v1=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        per_incident.append((body, {"Content-Type": "application/json", "X-PagerDuty-Signature": signature,
                                    "X-Webhook-Id": str(uuid.UUID(int=rng.getrandbits(128)))}))
        ids.append(f"postmortem/pagerduty/{incident_id}")
    order = [i for i in range(n_incidents) for _ in range(2)]
    rng.shuffle(order)
    return [Delivery(i, *per_incident[i]) for i in order], ids


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.popen.returncode}: {self.tail(3)!r}")

    def stop(self, timeout: float = 20.0) -> int:
        return stop_process(self.popen, timeout)


def start_proc(name: str, args: list[str], env: dict[str, str], log: Path) -> Proc:
    with log.open("wb") as out:
        popen = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    return Proc(name, popen, log)


async def connect_when_healthy(address: str, timeout: float) -> Client:
    """A client of the dev server at `address`, once its frontend answers (its port opens a moment before)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(address, data_converter=pydantic_data_converter)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def wait_healthy(web: Proc, base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=2) as http:
        while True:
            web.check()
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"the web app did not answer /healthz within {timeout:.0f}s: {web.tail(3)!r}")
            await asyncio.sleep(0.1)


async def wait_worker(client: Client, worker: Proc, task_queue: str, timeout: float) -> None:
    """Until the worker polls its workflow task queue."""
    deadline = time.monotonic() + timeout
    while True:
        worker.check()
        resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
        if resp.pollers:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"the worker did not poll {task_queue} within {timeout:.0f}s: {worker.tail(3)!r}")
        await asyncio.sleep(0.2)


# --------------------------------------------------------------------------- the load


@dataclass
class Result:
    status: int | None = None  # None: no HTTP answer
    error: str | None = None
    latency: float = 0.0  # seconds from the due time to the end of the answer
    lag: float = 0.0  # seconds from the due time to the moment the request went out (a free connection)
    new: bool | None = None
    workflow_id: str | None = None


@dataclass
class Load:
    results: list[Result] = field(default_factory=list)
    sent_first: float = 0.0
    sent_last: float = 0.0
    finished: float = 0.0


IDLE_MAX = 4.0  # seconds; below uvicorn's keep-alive timeout (5 s)


class Http1:
    """A minimal HTTP/1.1 keep-alive client: pre-built request bytes out, status and Content-Length body in.
    The load generator shares the machine with the server it measures; httpx costs several ms of CPU per
    request here (measured: 47 CPU s for 6000 requests), enough to slow the generator down and count its
    own delay as the server's latency. This costs a fraction of that."""

    def __init__(self, host: str, port: int, connections: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.slots = asyncio.Semaphore(connections)

    async def post(self, request: bytes, went: list[float]) -> tuple[int, bytes]:
        """Send when a connection is free (its time appended to `went`); the answer's status and body."""
        async with self.slots:
            went.append(asyncio.get_running_loop().time())
            conn = await self._connection()
            try:
                status, body, keep = await asyncio.wait_for(self._exchange(*conn, request), self.timeout)
            except BaseException:
                conn[1].close()
                raise
            if keep:
                self.idle.append((*conn, asyncio.get_running_loop().time()))
            else:
                conn[1].close()
            return status, body

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """An idle connection the server has not closed (uvicorn closes one idle for 5 s, so none idle for
        more than IDLE_MAX is reused), else a new one."""
        now = asyncio.get_running_loop().time()
        while self.idle:
            reader, writer, since = self.idle.pop()
            if not reader.at_eof() and now - since < IDLE_MAX:
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    @staticmethod
    async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        request: bytes) -> tuple[int, bytes, bool]:
        writer.write(request)
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("connection closed before an answer")
        status = int(status_line.split()[1])
        length, keep = 0, True
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                keep = False
            elif name == b"transfer-encoding":
                raise ValueError("chunked answers are not supported by this client")
        return status, await reader.readexactly(length), keep

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()


def request_bytes(host: str, port: int, d: Delivery) -> bytes:
    head = ["POST /webhooks/pagerduty HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(d.body)}",
            *(f"{k}: {v}" for k, v in d.headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + d.body


async def send_all(host: str, port: int, plan: list[Delivery], rate: float, concurrency: int,
                   timeout: float) -> Load:
    """Request k is due at t0 + k/rate. A request waits for one of `concurrency` connections; its latency
    counts from its due time, so waiting (for the server, the pool or this loop) is never hidden."""
    http = Http1(host, port, concurrency, timeout)
    requests = [request_bytes(host, port, d) for d in plan]
    results = [Result() for _ in plan]
    load = Load(results)
    sent: list[float] = []
    loop = asyncio.get_running_loop()

    async def one(k: int, due: float) -> None:
        r = results[k]
        went: list[float] = []
        try:
            r.status, body = await http.post(requests[k], went)
            if r.status == 202:
                answer = json.loads(body)
                r.new, r.workflow_id = answer.get("new"), answer.get("workflow_id")
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
            r.status, r.error = None, type(e).__name__
        r.latency = loop.time() - due
        if went:
            sent.append(went[0])
            r.lag = went[0] - due

    # The collector off while sending: a full collection of this process's heap (the plan, the results, the
    # Temporal client) took 230 ms once, and every request due meanwhile would count it as the server's latency.
    gc.collect()
    gc.freeze()
    gc.disable()
    t0 = loop.time() + 0.05
    tasks = []
    try:
        for k in range(len(plan)):
            due = t0 + k / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(k, due)))
            if k and k % int(max(rate, 1) * 5) == 0:
                print(f"webhooks: {k}/{len(plan)} due so far", file=sys.stderr, flush=True)
        await asyncio.gather(*tasks)
    finally:
        gc.enable()
        gc.unfreeze()
        http.close()
    load.finished = loop.time() - t0
    load.sent_first, load.sent_last = min(sent) - t0, max(sent) - t0
    return load


# --------------------------------------------------------------------------- visibility


async def count_started(client: Client, query: str, expected: int, timeout: float) -> tuple[int, float]:
    """Lifecycles visibility counts for the query, once the count stops moving: it reached `expected` and
    held for two more polls, or stayed the same for 10 s. Returns (count, seconds waited)."""
    t0 = time.monotonic()
    last, same_since, held = -1, time.monotonic(), 0
    while True:
        count = (await client.count_workflows(query)).count
        now = time.monotonic()
        if count != last:
            last, same_since, held = count, now, 0
        else:
            held += 1
        if (count >= expected and held >= 2) or now - same_since > 10 or now - t0 > timeout:
            return count, round(now - t0, 1)
        await asyncio.sleep(0.5)


# --------------------------------------------------------------------------- the run


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]  # nearest rank


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    run_tag = uuid.uuid4().hex[:6].upper()
    task_queue = f"closeloop-webbench-{run_tag}"
    n_requests = int(round(args.rate * args.seconds))
    n_incidents = n_requests // 2
    if n_incidents < 1:
        raise BenchError("--rate × --seconds must be at least 2 (each incident is sent twice)")
    rng = random.Random(args.seed)
    plan, workflow_ids = deliveries(n_incidents, run_tag, rng)

    config = tmp / "closeloop.toml"
    config.write_text(f'data_dir = "{tmp / "data"}"\n' + BENCH_CONFIG
                      + f'\n[inbox]\nforward_in = "{args.forward_in}"\n')
    closeloop = venv_binary("closeloop", "closeloop")
    web_port = free_port()
    base = f"http://127.0.0.1:{web_port}"

    query = (f'WorkflowType = "PostmortemWorkflow" AND TaskQueue = "{task_queue}" '
             f'AND WorkflowId STARTS_WITH "postmortem/pagerduty/PB{run_tag}"')
    temporal = DevServerProcess(temporal_binary(), tmp / "temporal", in_memory=True)
    try:
        await asyncio.to_thread(temporal.start)
        client = await connect_when_healthy(temporal.address, 60)
    except Exception as e:  # noqa: BLE001
        temporal.stop()
        raise BenchError(f"cannot start the Temporal dev server: {e}") from e
    try:
        assert temporal.proc is not None
        server = [temporal.proc.pid]
        address = temporal.address
        print(f"dev server up at {address}", file=sys.stderr, flush=True)
        proc_env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSELOOP_")}
        proc_env.update(CLOSELOOP_CONFIG=str(config), CLOSELOOP_TEMPORAL_ADDRESS=address,
                        CLOSELOOP_NAMESPACE="default", CLOSELOOP_TASK_QUEUE=task_queue,
                        CLOSELOOP_DB_URL=args.db_url or f"sqlite:///{tmp / 'closeloop.db'}", PYTHONUNBUFFERED="1")
        # migrate once, before two processes open the store
        from closeloop.store.store import Store

        Store(proc_env["CLOSELOOP_DB_URL"]).close()
        worker = None if args.no_worker else start_proc(
            "closeloop worker", [closeloop, "worker", "--log-level", args.log_level], proc_env, tmp / "worker.log")
        web = start_proc("closeloop serve", [closeloop, "serve", "--port", str(web_port), "--log-level",
                                             args.log_level],
                         {**proc_env, "CLOSELOOP_PAGERDUTY_SECRETS": SECRET}, tmp / "web.log")
        try:
            if worker:
                await wait_worker(client, worker, task_queue, 60)
            await wait_healthy(web, base, 60)
            # warm up the request path with an event that starts nothing (the forwarder connects to Temporal)
            warm = json.dumps({"event": {"event_type": "incident.acknowledged", "data": {}}}).encode()
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                for _ in range(3):
                    r = await http.post("/webhooks/pagerduty", content=warm, headers={
                        "X-PagerDuty-Signature": "v1=" + hmac.new(SECRET.encode(), warm, hashlib.sha256).hexdigest()})
                    if r.status_code != 202:
                        raise BenchError(f"warm-up delivery answered {r.status_code}: {r.text[:200]}")
            print(f"web app on {base}; sending {n_requests} deliveries of {n_incidents} incidents at "
                  f"{args.rate:g}/s for {args.seconds:g}s (cap {args.concurrency} in flight)",
                  file=sys.stderr, flush=True)
            pids = {"web": web.popen.pid, **({"worker": worker.popen.pid} if worker else {})}
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            cpu0["dev_server"] = sum(cpu_seconds(p) for p in server)
            cpu0["load_generator"] = time.process_time()
            load = await send_all("127.0.0.1", web_port, plan, args.rate, args.concurrency, args.timeout)
            past_start = (await client.count_workflows(f'{query} AND CloseloopStage != "starting"')).count
            cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
            cpu["dev_server"] = sum(cpu_seconds(p) for p in server) - cpu0["dev_server"]
            cpu["load_generator"] = time.process_time() - cpu0["load_generator"]
            for proc in (web, worker):
                if proc:
                    proc.check()
            # the forwarder (app or worker) starts the lifecycles after the answers: count while both still run
            accepted = {plan[k].incident for k, r in enumerate(load.results) if r.status == 202}
            started, settle = await count_started(client, query, len(accepted), args.settle)
            inbox_store = Store(proc_env["CLOSELOOP_DB_URL"], migrate=False)
            try:
                inbox = inbox_store.inbox.counts()
            finally:
                inbox_store.close()
        finally:
            web.stop()
            if worker:
                worker.stop()
    finally:
        temporal.stop()

    results = load.results
    if args.latencies:  # one line per request, in due order: due offset (s), latency and send lag (ms), status
        with open(args.latencies, "w") as out:
            for k, r in enumerate(results):
                out.write(f"{k / args.rate:.3f} {r.latency * 1000:.1f} {r.lag * 1000:.1f} {r.status or r.error}\n")
    latencies = sorted(r.latency * 1000 for r in results if r.status is not None)
    statuses = Counter(str(r.status) for r in results if r.status is not None)
    errors = Counter(r.error for r in results if r.error)
    wrong_ids = sum(1 for k, r in enumerate(results)
                    if r.status == 202 and r.workflow_id != workflow_ids[plan[k].incident])
    new = sum(1 for r in results if r.new is True)
    span = load.sent_last - load.sent_first
    figures = {
        "rate": args.rate, "seconds": args.seconds, "concurrency": args.concurrency, "seed": args.seed,
        "requests": n_requests, "incidents": n_incidents,
        "answered": len(latencies),
        "achieved_rate": round((n_requests - 1) / span, 1) if span > 0 else None,
        "latency_ms": {"p50": round(percentile(latencies, 50), 1), "p95": round(percentile(latencies, 95), 1),
                       "p99": round(percentile(latencies, 99), 1), "max": round(latencies[-1], 1) if latencies
                       else None, "mean": round(statistics.fmean(latencies), 1) if latencies else None},
        "max_send_lag_ms": round(max(r.lag for r in results) * 1000, 1),
        "status_codes": dict(sorted(statuses.items())),
        "5xx": sum(n for code, n in statuses.items() if code.startswith("5")),
        "connection_errors": sum(errors.values()), "errors": dict(errors),
        "answered_new": new, "answered_duplicate": sum(1 for r in results if r.new is False),
        "wrong_workflow_ids": wrong_ids,
        "incidents_accepted": len(accepted),
        "workflows_started": started, "visibility_settled_after_s": settle, "inbox": inbox,
        "lifecycles_past_starting_when_sending_ended": past_start,
        "cpu_seconds": {k: round(v, 1) for k, v in cpu.items()},
        "wall_seconds": round(load.finished, 2),
        "worker": not args.no_worker, "forward_in": args.forward_in,
    }
    figures["ok"] = (started == len(accepted) == n_incidents and new == started and wrong_ids == 0
                     and inbox.get("pending", 0) == 0 and inbox.get("refused", 0) == 0)
    return figures


def table(f: dict[str, Any]) -> str:
    lat = f["latency_ms"]
    cpu = f["cpu_seconds"]
    rows = [
        ("requests sent", f"{f['requests']} ({f['incidents']} incidents × 2), {f['answered']} answered"),
        ("achieved rate", f"{f['achieved_rate']} req/s (target {f['rate']:g}); max send lag "
                          f"{f['max_send_lag_ms']} ms"),
        ("latency ms p50/p95/p99/max", f"{lat['p50']} / {lat['p95']} / {lat['p99']} / {lat['max']} "
                                       f"(mean {lat['mean']}; from the due time)"),
        ("status codes", ", ".join(f"{k}: {v}" for k, v in f["status_codes"].items()) or "none"),
        ("5xx", str(f["5xx"])),
        ("connection errors", str(f["connection_errors"]) + (f" {f['errors']}" if f["errors"] else "")),
        ("202 new / duplicate", f"{f['answered_new']} / {f['answered_duplicate']}"),
        ("incidents accepted", f"{f['incidents_accepted']} of {f['incidents']}"),
        ("workflows started", f"{f['workflows_started']} (visibility, settled "
                              f"{f['visibility_settled_after_s']} s after sending ended)"),
        ("inbox rows", ", ".join(f"{k}: {v}" for k, v in sorted(f["inbox"].items())) or "none"),
        ("worker progress", f"{f['lifecycles_past_starting_when_sending_ended']} lifecycles past their first "
                            f"stage when sending ended (visibility)"),
        ("CPU s web/worker/dev server/load", f"{cpu['web']} / {cpu.get('worker', 'none')} / "
                                             f"{cpu['dev_server']} / {cpu['load_generator']} "
                                             f"(in {f['wall_seconds']} s)"),
    ]
    head = (f"closeloop webhook benchmark: PagerDuty incident.resolved, signed, {f['rate']:g} req/s for "
            f"{f['seconds']:g} s open-loop, each incident twice, at most {f['concurrency']} in flight"
            + ("" if f["worker"] else "; NO worker") + f"; the inbox forwarded by the {f['forward_in']}")
    verdict = ("workflows started = distinct incidents: yes" if f["ok"] else
               "workflows started = distinct incidents: NO (see the figures above)")
    return "\n".join([head, "", *(f"{label:34}{value}" for label, value in rows), "", verdict])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    ap.add_argument("--seconds", type=float, default=30.0, help="how long to send (default 30)")
    ap.add_argument("--concurrency", type=int, default=256,
                    help="at most this many requests in flight (connections); the rest wait, and the wait "
                         "counts in their latency (default 256)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds one request may take (default 30)")
    ap.add_argument("--settle", type=float, default=120.0,
                    help="seconds to wait for the visibility count to settle (default 120)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the payloads and the send order (default 1)")
    ap.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                    help="log level of the web app and the worker (their logs go to files; default WARNING)")
    ap.add_argument("--no-worker", action="store_true",
                    help="run no closeloop worker (to see the web app and Temporal alone; the lifecycles only "
                         "start)")
    ap.add_argument("--forward-in", choices=["web", "worker"], default="web",
                    help="where the inbox's forwarder runs ([inbox] forward_in): the web app (default, as shipped) "
                         "or the worker (the web app then only commits and answers)")
    ap.add_argument("--db-url", metavar="URL",
                    help="the store of the web app and the worker (default: SQLite in the run's temp dir); e.g. "
                         "postgresql+psycopg://postgres@127.0.0.1:5432/<a database of its own> (its tables are "
                         "created; rows of earlier runs stay, so give each run a new database)")
    ap.add_argument("--latencies", metavar="FILE",
                    help="also write every request's due time (s from the start), latency and send lag (ms) and "
                         "status to FILE, one line each (to see when the slow ones happened, and whether the "
                         "sender was late)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    args = ap.parse_args(argv)
    if args.no_worker and args.forward_in == "worker":
        ap.error("--forward-in worker needs the worker (not --no-worker)")
    if args.rate <= 0 or args.seconds <= 0:
        ap.error("--rate and --seconds must be positive")
    if args.concurrency < 1:
        ap.error("--concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    def run() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="closeloop-webbench-") as tmp:
            return asyncio.run(bench(args, Path(tmp)))

    result = run_reporting_errors(run)
    if isinstance(result, int):
        return result
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0 if result["ok"] else 2


if __name__ == "__main__":
    sys.exit(main())
