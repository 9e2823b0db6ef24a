#!/opt/closeloop/bin/python
"""The closeloop image's health check (`closeloop-healthcheck` in the image; deploy/Dockerfile's HEALTHCHECK, compose's
healthchecks and the Kubernetes worker probes). Exit 0: healthy; 1: not, with the reason on stderr.

    closeloop-healthcheck            # the role of the container's main process (PID 1)
    closeloop-healthcheck web        # GET http://127.0.0.1:$CLOSELOOP_WEB_PORT/healthz answers 200
    closeloop-healthcheck worker     # Temporal's frontend accepts a TCP connection

The web app has GET /healthz. The worker has no endpoint of its own yet, so its check is what it cannot work
without: a connection to the Temporal frontend it polls (CLOSELOOP_TEMPORAL_ADDRESS, else the config's
[temporal] address). Once the workers serve Prometheus metrics on :9464 (deploy/README.md), probe that instead.
Any other command (`closeloop db upgrade`, `closeloop config check`) is healthy while it runs.

Standard library only, besides closeloop's config loader when the address is not in the environment."""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT = 3.0


def main_command(proc: Path = Path("/proc/1/cmdline")) -> list[str]:
    """The arguments of the container's main process (PID 1), [] where they cannot be read."""
    try:
        return [arg for arg in proc.read_bytes().decode(errors="replace").split("\0") if arg]
    except OSError:
        return []


def role_of(argv: list[str]) -> str:
    """`web` for `closeloop serve`, `worker` for `closeloop worker` (or `python worker.py`), else `other`."""
    if "serve" in argv:
        return "web"
    if "worker" in argv or any(arg.endswith("worker.py") for arg in argv):
        return "worker"
    return "other"


def check_web(env: dict[str, str]) -> str | None:
    port = env.get("CLOSELOOP_WEB_PORT") or "8080"
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            if answer.status == 200:
                return None
            return f"{url} answered {answer.status}"
    except urllib.error.HTTPError as e:
        return f"{url} answered {e.code}"
    except (OSError, ValueError) as e:
        return f"{url}: {e}"


def temporal_address(env: dict[str, str]) -> str:
    if env.get("CLOSELOOP_TEMPORAL_ADDRESS"):
        return env["CLOSELOOP_TEMPORAL_ADDRESS"]
    from closeloop.config import load_config

    return load_config(env.get("CLOSELOOP_CONFIG") or None, env=env).temporal.address


def check_worker(env: dict[str, str]) -> str | None:
    try:
        address = temporal_address(env)
    except Exception as e:  # noqa: BLE001 - a config problem is an unhealthy worker too
        return f"no Temporal address: {e}"
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT):
            return None
    except (OSError, ValueError) as e:
        return f"Temporal at {address} is unreachable: {e}"


def check(role: str, env: dict[str, str]) -> str | None:
    """None when healthy, else why not."""
    if role == "web":
        return check_web(env)
    if role == "worker":
        return check_worker(env)
    return None


def main(argv: list[str]) -> int:
    role = argv[0] if argv else role_of(main_command())
    if role not in ("web", "worker", "other"):
        print(f"closeloop-healthcheck: unknown role {role!r} (web or worker)", file=sys.stderr)
        return 2
    problem = check(role, dict(os.environ))
    if problem:
        print(f"closeloop-healthcheck: {role}: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
