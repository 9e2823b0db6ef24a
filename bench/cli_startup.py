"""How long an acting CLI command takes to fail against an unreachable Temporal, against `closeloop --help`,
measured in one run (issue: the CLI imports only the contract and the client).

    python bench/cli_startup.py [--runs 15] [--json]

Each command runs `--runs` times, interleaved (help, status, help, status, ...), as a fresh process from
this venv; the figure is the median wall time of each and their ratio. `status` points at 127.0.0.1:1,
where nothing listens, so it fails at once (exit 1) after loading what acting needs."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "help": ["--help"],
    "status": ["--address", "127.0.0.1:1", "status", "api/X"],
}


def closeloop_binary() -> str:
    found = shutil.which("closeloop") or shutil.which("closeloop", path=str(Path(sys.executable).parent))
    if not found:
        raise SystemExit("bench: `closeloop` is not installed in this venv (pip install -e .)")
    return found


def measure(runs: int) -> dict[str, list[float]]:
    exe = closeloop_binary()
    env = {**os.environ, "CLOSELOOP_CONFIG": ""}
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, args in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run([exe, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
            times[name].append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    times = measure(args.runs)
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {"runs": args.runs, "median_seconds": medians, "ratio": medians["status"] / medians["help"]}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"closeloop --help                          median {medians['help'] * 1000:7.1f} ms")
        print(f"closeloop --address 127.0.0.1:1 status    median {medians['status'] * 1000:7.1f} ms")
        print(f"ratio                                     {result['ratio']:.2f}x  ({args.runs} runs each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
