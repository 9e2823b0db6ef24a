"""Slow clients against `closeloop serve` (its own process, on loopback; Temporal is not needed): N clients
each send a request head and a part of its body, then wait. Meanwhile /healthz is asked every 20 ms on a new
connection (as a load balancer's health check does) and the server's RSS is read from /proc. Reports the RSS
before, at its peak and after, /healthz latency while the clients hang (and during the bursts when they all
arrive and are all cut off), and how long each client stayed connected.

    python bench/slow_clients.py                    # 1,500 clients, [web] body_timeout = 10s
    python bench/slow_clients.py --clients 300 --json
    python bench/slow_clients.py --no-limits        # no [web] limits in the config: a build without them

See bench/README.md. Progress and the server's log go to stderr and a file; stdout carries only the figures.
Exit 1 with one line on stderr when the run cannot be made."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_CONFIG, BenchError, run_reporting_errors, venv_binary  # noqa: E402

from closeloop.cli.dev import stop_process  # noqa: E402

TOKEN = "bench-slow-clients-token"  # a throwaway API token for this run's own server
INCIDENT = json.dumps({"external_id": "INC-4242", "title": "Checkout latency above the SLO for 40 minutes",
                       "severity": "SEV2", "services": ["checkout"], "summary": "x" * 4000}).encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


def _healthz(port: int) -> float:
    """Seconds from connecting to the whole answer of one /healthz; inf when it is not a 200."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: closeloop\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:
        return float("inf")
    return time.perf_counter() - started if answer.startswith(b"HTTP/1.1 200") else float("inf")


async def _slow_client(port: int, part: int, wait: float, sent_at: list[float], total: int,
                       all_sent: asyncio.Event) -> float | None:
    """Head and `part` bytes of the body, then wait: seconds until the server cut it off (None: still open)."""
    head = (f"POST /api/incidents HTTP/1.1\r\nHost: closeloop\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(INCIDENT)}\r\n\r\n").encode()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        sent_at.append(float("nan"))
        if len(sent_at) == total:
            all_sent.set()
        return -1.0  # refused
    try:
        writer.write(head + INCIDENT[:part])
        await writer.drain()
        sent = time.monotonic()
        sent_at.append(sent)
        if len(sent_at) == total:
            all_sent.set()
        try:
            async with asyncio.timeout(wait):
                while await reader.read(65536):
                    pass
        except TimeoutError:
            return None
        except OSError:
            pass
        return time.monotonic() - sent
    finally:
        writer.close()


def _figures(values: list[float]) -> dict[str, Any]:
    finite = sorted(v for v in values if v != float("inf"))
    if not finite:
        return {"samples": len(values), "failed": len(values)}
    return {"samples": len(values), "failed": len(values) - len(finite),
            "median_ms": round(statistics.median(finite) * 1000, 1),
            "p99_ms": round(finite[min(len(finite) - 1, int(len(finite) * 0.99))] * 1000, 1),
            "max_ms": round(finite[-1] * 1000, 1)}


def measure(clients: int, hold: float, part: int, limits: bool, log: Path, waves: int = 1) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < clients + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, clients + 200), hard))
    with tempfile.TemporaryDirectory(prefix="closeloop-bench-") as tmp:
        config = Path(tmp) / "closeloop.toml"
        web = f'\n[web]\nheader_timeout = "{hold:g}s"\nbody_timeout = "{hold:g}s"\n' if limits else ""
        config.write_text(f'data_dir = "{tmp}/data"\n' + BENCH_CONFIG + web)
        port = _free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen([venv_binary("closeloop", "closeloop"), "--config", str(config), "serve",
                                     "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, "CLOSELOOP_API_TOKENS": TOKEN})
        try:
            deadline = time.monotonic() + 60
            while _healthz(port) == float("inf"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"closeloop serve did not start (log: {log})")
                time.sleep(0.2)
            result = _run(proc.pid, port, clients, hold, part)
            result["rss_mib_after_each_wave"] = [result["rss_mib"]["after"]]
            for _ in range(waves - 1):  # the same again: memory freed by one wave is reused by the next
                result["rss_mib_after_each_wave"].append(_run(proc.pid, port, clients, hold, part)["rss_mib"]["after"])
        finally:
            stop_process(proc, 30)
    result["server_error_lines"] = sum('"level": "error"' in line for line in log.read_text().splitlines())
    return result


def _run(pid: int, port: int, clients: int, hold: float, part: int) -> dict[str, Any]:
    for _ in range(50):  # warm: imports and caches of the first requests
        _healthz(port)
    idle = []
    for _ in range(150):  # the same checks with no slow client: this machine's noise floor
        idle.append(_healthz(port))
        time.sleep(0.02)
    baseline = _rss_mib(pid)
    samples: list[tuple[float, float]] = []
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            when = time.monotonic()
            samples.append((when, _healthz(port)))
            peak[0] = max(peak[0], _rss_mib(pid))
            time.sleep(0.02)

    sent_at: list[float] = []
    marks: dict[str, float] = {}
    wait = hold + 15.0

    async def run() -> list[float | None]:
        all_sent = asyncio.Event()
        marks["start"] = time.monotonic()
        tasks = [asyncio.create_task(_slow_client(port, part, wait, sent_at, clients, all_sent))
                 for _ in range(clients)]
        await all_sent.wait()
        marks["all_sent"] = time.monotonic()
        print(f"bench: {clients} clients connected in {marks['all_sent'] - marks['start']:.1f}s", file=sys.stderr)
        return await asyncio.gather(*tasks)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        cut = asyncio.run(run())
    finally:
        stop.set()
        sampler.join()
    time.sleep(1.0)
    after = _rss_mib(pid)
    first_sent = min((t for t in sent_at if t == t), default=marks["all_sent"])  # NaN: refused
    hanging = [s for w, s in samples if marks["all_sent"] + 0.3 <= w <= first_sent + hold - 0.3]
    bursts = [s for w, s in samples if not marks["all_sent"] + 0.3 <= w <= first_sent + hold - 0.3]
    held = [c for c in cut if c is not None and c >= 0]
    return {
        "clients": clients, "hold_s": hold, "body_part_bytes": part,
        "refused": sum(1 for c in cut if c is not None and c < 0),
        "still_open_after_s": wait, "still_open": sum(1 for c in cut if c is None),
        "connected_s": {"median": round(statistics.median(held), 2), "max": round(max(held), 2)} if held else None,
        "rss_mib": {"before": round(baseline, 1), "peak": round(peak[0], 1), "after": round(after, 1)},
        "healthz_idle": _figures(idle),
        "healthz_while_hanging": _figures(hanging),
        "healthz_arrival_and_cutoff": _figures(bursts),
        "healthz_slowest": [(round(w - marks["start"], 2), round(s * 1000, 1))
                            for w, s in sorted(samples, key=lambda ws: -ws[1])[:3]],  # (s after start, ms)
        "all_connected_s": round(marks["all_sent"] - marks["start"], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1500)
    parser.add_argument("--hold", type=float, default=10.0, help="[web] header_timeout and body_timeout, s")
    parser.add_argument("--part", type=int, default=1000, help="bytes of the body each client sends")
    parser.add_argument("--no-limits", action="store_true", help="no [web] limits in the config")
    parser.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "closeloop-bench-serve.log")
    parser.add_argument("--waves", type=int, default=1, help="runs of the N clients, one after the other")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.clients <= 20000 or not 0 < args.part < len(INCIDENT):
        print(f"bench: --clients must be 1..20000 and --part 1..{len(INCIDENT) - 1}", file=sys.stderr)
        return 1
    result = run_reporting_errors(lambda: measure(args.clients, args.hold, args.part, not args.no_limits, args.log,
                                                     max(1, args.waves)))
    if isinstance(result, int):
        return result
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rss, calm, burst = result["rss_mib"], result["healthz_while_hanging"], result["healthz_arrival_and_cutoff"]
    print(f"clients             {result['clients']} (each {result['body_part_bytes']} bytes of a "
          f"{len(INCIDENT)}-byte body), refused {result['refused']}")
    print(f"RSS MiB             before {rss['before']}, peak {rss['peak']}, after {rss['after']}; after each wave "
          f"{result['rss_mib_after_each_wave']}")
    print(f"/healthz idle       {result['healthz_idle']}")
    print(f"/healthz hanging    {calm}")
    print(f"/healthz bursts     {burst}")
    print(f"connected s         {result['connected_s']}; still open after {result['still_open_after_s']:g}s: "
          f"{result['still_open']}")
    print(f"slowest /healthz    {result['healthz_slowest']} (s after the start, ms)")
    print(f"ERROR log lines     {result['server_error_lines']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
