#!/opt/closeloop/bin/python
"""The closeloop image's health check (`closeloop-healthcheck` in the image; deploy/Dockerfile's HEALTHCHECK and
compose's healthchecks). Exit 0: healthy; 1: not, with the reason on stderr; 2: a usage error.

    closeloop-healthcheck                   # the role of the container's main process (PID 1)
    closeloop-healthcheck web               # GET http://127.0.0.1:$CLOSELOOP_WEB_PORT/healthz answers 200
    closeloop-healthcheck worker            # GET http://127.0.0.1:$CLOSELOOP_METRICS_PORT/healthz answers 200
    closeloop-healthcheck --ready [ROLE]    # the same process's GET /readyz: 200 once Temporal and the database answer

Both processes serve `/healthz` (alive) and `/readyz` (503 while Temporal or the database cannot be reached) next to
their `/metrics` (README: "Monitoring"): the web app on its own port (CLOSELOOP_WEB_PORT, default 8080), the worker on
`[telemetry] worker_port` (CLOSELOOP_METRICS_PORT, else the config's, default 9464). A worker whose port is 0 serves
nothing; its check is then what it cannot work without: a connection to the Temporal frontend it polls
(CLOSELOOP_TEMPORAL_ADDRESS, else the config's [temporal] address). Any other command (`closeloop db upgrade`,
`closeloop config check`) is healthy while it runs. Kubernetes probes the same paths with httpGet.

Standard library only, besides closeloop's config loader when a port or address is not in the environment."""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TIMEOUT = 3.0
WORKER_PORT = 9464  # [telemetry] worker_port's default
WILDCARDS = ("", "0.0.0.0", "::", "[::]")


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


def config(env: dict[str, str]) -> Any:
    from closeloop.config import load_config

    return load_config(env.get("CLOSELOOP_CONFIG") or None, env=env)


def probe_host(host: str | None) -> str:
    """Where to ask a process listening on `host`: loopback for every address (0.0.0.0, ::) or none given."""
    if host is None or host.strip() in WILDCARDS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def get(url: str) -> str | None:
    """None when GET `url` answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            if answer.status == 200:
                return None
            return f"{url} answered {answer.status}"
    except urllib.error.HTTPError as e:
        return f"{url} answered {e.code}"
    except (OSError, ValueError) as e:
        return f"{url}: {e}"


def path_for(ready: bool) -> str:
    return "/readyz" if ready else "/healthz"


def check_web(env: dict[str, str], *, ready: bool = False) -> str | None:
    port = env.get("CLOSELOOP_WEB_PORT") or "8080"
    return get(f"http://{probe_host(env.get('CLOSELOOP_WEB_HOST'))}:{port}{path_for(ready)}")


def worker_port(env: dict[str, str]) -> int:
    """CLOSELOOP_METRICS_PORT, else the config's [telemetry] worker_port (9464 without a config)."""
    if env.get("CLOSELOOP_METRICS_PORT"):
        return int(env["CLOSELOOP_METRICS_PORT"])
    if not env.get("CLOSELOOP_CONFIG"):
        return WORKER_PORT
    return int(config(env).telemetry.worker_port)


def temporal_address(env: dict[str, str]) -> str:
    if env.get("CLOSELOOP_TEMPORAL_ADDRESS"):
        return env["CLOSELOOP_TEMPORAL_ADDRESS"]
    return str(config(env).temporal.address)


def check_temporal(env: dict[str, str]) -> str | None:
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


def check_worker(env: dict[str, str], *, ready: bool = False) -> str | None:
    try:
        port = worker_port(env)
    except Exception as e:  # noqa: BLE001 - a config problem is an unhealthy worker too
        return f"no metrics port: {e}"
    if port == 0:  # the worker serves no HTTP: fall back to what it cannot work without
        return check_temporal(env)
    return get(f"http://{probe_host(env.get('CLOSELOOP_METRICS_HOST'))}:{port}{path_for(ready)}")


def check(role: str, env: dict[str, str], *, ready: bool = False) -> str | None:
    """None when healthy (or, with `ready`, ready), else why not."""
    if role == "web":
        return check_web(env, ready=ready)
    if role == "worker":
        return check_worker(env, ready=ready)
    return None


def main(argv: list[str]) -> int:
    ready = "--ready" in argv
    args = [arg for arg in argv if arg != "--ready"]
    if len(args) > 1 or any(arg.startswith("-") for arg in args):
        print("usage: closeloop-healthcheck [--ready] [web|worker]", file=sys.stderr)
        return 2
    role = args[0] if args else role_of(main_command())
    if role not in ("web", "worker", "other"):
        print(f"closeloop-healthcheck: unknown role {role!r} (web or worker)", file=sys.stderr)
        return 2
    problem = check(role, dict(os.environ), ready=ready)
    if problem:
        print(f"closeloop-healthcheck: {role}: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
