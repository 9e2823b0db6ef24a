"""Operations faults on the real Temporal dev server: a second `closeloop dev` on one data directory stops at
once; an unknown namespace is said as such (not "no postmortem"); a worker leaves an existing Schedule whose
settings differ alone unless told to update it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from closeloop.sweep_schedules import apply
from tests.devserver.conftest import fast_config_text

CLOSELOOP = [sys.executable, "-m", "closeloop.cli.main"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CLOSELOOP_")}, **extra}


def _one_line(proc: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-2000:]
    assert proc.returncode == code, (proc.returncode, lines)
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_a_second_closeloop_dev_on_the_same_data_dir_stops_at_once(tmp_path: Path) -> None:
    config = tmp_path / "closeloop.toml"
    config.write_text(fast_config_text(tmp_path / "unused"))
    data = tmp_path / "data"
    log = tmp_path / "first.log"
    with log.open("wb") as out:
        first = subprocess.Popen([*CLOSELOOP, "--config", str(config), "dev", "--data-dir", str(data), "--no-web",
                                  "--port", str(_free_port()), "--ui-port", str(_free_port())], cwd=tmp_path,
                                 env=_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "worker running" not in (text := log.read_text(errors="replace")):
            assert first.poll() is None and time.monotonic() < deadline, text[-3000:]
            time.sleep(0.2)
        second = subprocess.run([*CLOSELOOP, "--config", str(config), "dev", "--data-dir", str(data), "--no-web",
                                 "--port", str(_free_port()), "--ui-port", str(_free_port())], cwd=tmp_path,
                                env=_env(), capture_output=True, text=True, timeout=30)
        _one_line(second, 1, f"the data directory {data.resolve()} is in use by another `closeloop dev`",
                  f"(pid {first.pid})")
        assert first.poll() is None  # the first one runs on, undisturbed
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGTERM)
        try:
            first.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(first.pid, signal.SIGKILL)
    assert "ShardOwnershipLost" not in (data / "temporal.log").read_text(errors="replace")


def test_an_unknown_namespace_is_not_a_missing_postmortem(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    address = dev_env.client.service_client.config.target_host
    config = tmp_path / "closeloop.toml"
    config.write_text(fast_config_text(tmp_path / "data"))
    base = [*CLOSELOOP, "--config", str(config), "--address", address]
    nope = subprocess.run([*base, "--namespace", "nope", "status", "api/NOPE"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=60)
    _one_line(nope, 2, "has no namespace 'nope'", address)
    # the default namespace and an unknown postmortem: not found, exit 1, for status and notifications alike
    status = subprocess.run([*base, "status", "api/NOPE"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                            timeout=60)
    _one_line(status, 1, "no postmortem postmortem/api/NOPE")
    notifications = subprocess.run([*base, "notifications", "api/NOPE"], cwd=tmp_path, env=_env(),
                                   capture_output=True, text=True, timeout=60)
    _one_line(notifications, 1, "no postmortem postmortem/api/NOPE")


async def test_an_existing_schedule_that_differs_is_kept_unless_told(dev_env: WorkflowEnvironment) -> None:
    client = dev_env.client
    ids = ["closeloop-stalled-digest", "closeloop-ticket-sync", "closeloop-retention", "closeloop-effectiveness-review"]
    first = await apply(client, "closeloop-prod")
    assert set(first.values()) <= {"created", "unchanged", "updated", "kept"}
    await apply(client, "closeloop-prod", update=True)  # whatever an earlier test left: production's settings

    assert await apply(client, "closeloop-prod") == dict.fromkeys(ids, "unchanged")
    # a worker started without a config (task queue "closeloop") on the same server: nothing is rewritten
    assert await apply(client, "closeloop") == dict.fromkeys(ids, "kept")
    for schedule_id in ids:
        action = (await client.get_schedule_handle(schedule_id).describe()).schedule.action
        assert action.task_queue == "closeloop-prod"  # type: ignore[attr-defined]
    # told to: the config's settings win
    assert await apply(client, "closeloop", update=True) == dict.fromkeys(ids, "updated")
    for schedule_id in ids:
        action = (await client.get_schedule_handle(schedule_id).describe()).schedule.action
        assert action.task_queue == "closeloop"  # type: ignore[attr-defined]
