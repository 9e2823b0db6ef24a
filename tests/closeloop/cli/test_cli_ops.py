"""Operations faults (issue 9, section 4): each listed case gives exactly one line on stderr (no traceback) and
the exit code defined once in closeloop.cli._common (1 refused or not found, 2 bad input or config, 3 Temporal
or the database unreachable), for `closeloop` and `python worker.py` alike; the logs; the stalled docs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from closeloop.cli.main import cli
from tests.closeloop.cli.test_cli_errors import CLEAN_ENV, invoke, one_line_error
from tests.temporal_env import make_config

REPO = Path(__file__).resolve().parents[3]
# The documented exit codes (closeloop --help, README), as numbers: they are the contract with scripts.
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 1, 2, 3
CLOSED_PG = "postgresql+psycopg://postgres@127.0.0.1:1/closeloop"  # nothing listens on port 1


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    make_config(tmp_path)
    return tmp_path / "closeloop.toml"


def run_py(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A real process (what an operator runs), with none of the developer's CLOSELOOP_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLOSELOOP_")}
    return subprocess.run([sys.executable, *args], cwd=cwd, env={**clean, **env}, capture_output=True, text=True,
                          timeout=60)


def one_stderr_line(proc: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1, lines[:5]
    assert proc.returncode == code, (proc.returncode, lines)
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_a_non_utf8_config_is_one_line_from_python_worker_py(tmp_path: Path) -> None:
    bad = tmp_path / "closeloop.toml"
    bad.write_bytes('[people.jose]\nname = "José"\nemail = "j@example.com"\n'.encode("latin-1"))
    one_stderr_line(run_py([str(REPO / "worker.py")], tmp_path, CLOSELOOP_CONFIG=str(bad)), EXIT_BAD_INPUT,
                    "closeloop worker: ", str(bad), "not UTF-8")
    one_line_error(invoke(["config", "check"], bad), EXIT_BAD_INPUT, "not UTF-8", "byte 0xe9")


def test_an_unreachable_database_is_one_line_and_exit_3(tmp_path: Path, config_path: Path) -> None:
    worker = run_py([str(REPO / "worker.py")], tmp_path, CLOSELOOP_CONFIG=str(config_path),
                    CLOSELOOP_DB_URL=CLOSED_PG, CLOSELOOP_TEMPORAL_ADDRESS="127.0.0.1:1")
    # the worker logs where it runs first (one JSON line on stderr), then the one error line
    error = [line for line in worker.stderr.splitlines() if line.startswith("closeloop worker: ")]
    assert "Traceback" not in worker.stderr and len(error) == 1, worker.stderr[-2000:]
    assert worker.returncode == EXIT_UNAVAILABLE and "cannot reach the database" in error[0], error
    cli_run = CliRunner().invoke(cli, ["--config", str(config_path), "notifications"],
                                 env={**CLEAN_ENV, "CLOSELOOP_DB_URL": CLOSED_PG})
    one_line_error(cli_run, EXIT_UNAVAILABLE, "cannot reach the database", "Connection refused")
    one_line_error(CliRunner().invoke(cli, ["--config", str(config_path), "db", "upgrade"],
                                      env={**CLEAN_ENV, "CLOSELOOP_DB_URL": CLOSED_PG}), EXIT_UNAVAILABLE,
                   "cannot reach the database")


def test_extend_by_an_overflowing_duration(config_path: Path) -> None:
    one_line_error(invoke(["draft", "extend", "api/INC-1", "--as", "alice", "--by", "99999999999d", "--reason", "r"],
                          config_path), EXIT_BAD_INPUT, "--by", "99999999999d")
    bad = config_path.parent / "long.toml"
    bad.write_text(re.sub(r'(?m)^max_extension = .*$', 'max_extension = "99999999999d"', config_path.read_text()))
    one_line_error(invoke(["config", "check"], bad), EXIT_BAD_INPUT, "max_extension")


@pytest.mark.parametrize("address", ["bad address", "127.0.0.1", "host:99999"])
def test_a_bad_address_is_bad_input(config_path: Path, address: str) -> None:
    one_line_error(invoke(["--address", address, "status", "api/INC-1"], config_path), EXIT_BAD_INPUT, "--address")
    env = {**CLEAN_ENV, "CLOSELOOP_TEMPORAL_ADDRESS": address}
    one_line_error(CliRunner().invoke(cli, ["--config", str(config_path), "status", "api/INC-1"], env=env),
                   EXIT_BAD_INPUT, "temporal.address")


def test_a_management_cycle_fails_config_check(tmp_path: Path) -> None:
    cyclic = tmp_path / "closeloop.toml"
    cyclic.write_text('default_owner = "a"\n[people.a]\nname = "A"\nemail = "a@x.org"\nmanager = "b"\n'
                      '[people.b]\nname = "B"\nemail = "b@x.org"\nmanager = "a"\n')
    one_line_error(invoke(["config", "check"], cyclic), EXIT_BAD_INPUT, "management cycle a -> b -> a")


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "closeloop.yaml"
    bad.write_text("people:\n  alice:\n    name: Alice\n    email: [unclosed\n  bob:\n    name: Bob\n")
    line = one_line_error(invoke(["config", "check"], bad), EXIT_BAD_INPUT, "not valid YAML")
    assert "line 5" in line, line


def test_notifications_of_an_unknown_postmortem_is_not_found_like_status(config_path: Path) -> None:
    assert invoke(["db", "upgrade"], config_path).exit_code == 0
    one_line_error(invoke(["notifications", "api/NOPE"], config_path), EXIT_FAILED, "no postmortem postmortem/api/NOPE")


def test_exit_codes_are_documented_in_help() -> None:
    result = CliRunner().invoke(cli, ["--help"], env=CLEAN_ENV)
    text = " ".join(result.output.split())
    assert "Exit codes: 0 ok; 1 refused or not found; 2 bad input or config; 3 Temporal or the database" in text


def test_exceptions_and_temporal_core_logs_are_json(tmp_path: Path) -> None:
    """An exception keeps its traceback (structured, no tuple repr); the SDK's Rust core logs come through our
    JSON lines (no ANSI colours, no plain-text lines among them)."""
    script = textwrap.dedent("""
        import logging, time
        from closeloop import logging as closeloop_logging
        from temporalio.runtime import Runtime
        closeloop_logging.configure("DEBUG", json=True)
        Runtime.default()._core_runtime.write_test_info_log("core says hello", "{}")
        time.sleep(0.5)
        try:
            {}["missing"]
        except KeyError:
            logging.getLogger("closeloop.test").exception("lookup failed")
    """)
    proc = run_py(["-c", script], tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "\x1b[" not in proc.stderr
    events = [json.loads(line) for line in lines]  # every line is JSON
    core = [e for e in events if "core says hello" in e["event"]]
    assert core and core[0]["logger"].startswith("temporalio.core"), events
    failed = next(e for e in events if e["event"] == "lookup failed")
    assert "exc_info" not in failed
    exc = failed["exception"][0]
    assert exc["exc_type"] == "KeyError" and exc["frames"][-1]["name"] == "<module>"
    assert "locals" not in exc["frames"][-1]  # locals can hold secrets


def test_stalled_help_and_behaviour_agree() -> None:
    """`closeloop stalled --help` says a postmortem stalls at its due time; the chase marks it so then, while
    the whole escalation is still ahead."""
    from closeloop.chase_plan import apply, next_action
    from closeloop.models import ChaseState
    from closeloop.policy import EscalationStep

    help_text = " ".join(CliRunner().invoke(cli, ["stalled", "--help"], env=CLEAN_ENV).output.split())
    assert "stalls the moment its draft or review passes its due time" in help_text, help_text
    assert "run out" not in help_text.replace("not when it has run out", "")
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "A postmortem stalls the moment its draft or review passes its due time" in readme

    start = datetime(2025, 3, 3, 9, tzinfo=UTC)
    chase = ChaseState(started_at=start, due_at=start + timedelta(days=5))
    steps = [EscalationStep(after=timedelta(0), notify="owner"), EscalationStep(after=timedelta(days=2),
                                                                               notify="manager")]
    kinds = []
    while len(kinds) < 3:
        action = next_action(chase, every=timedelta(days=10), steps=steps)
        kinds.append((action.kind, action.at))
        apply(chase, action)
    assert kinds[0] == ("stall", chase.due_at)  # stalled at the due time, before any escalation
    assert kinds[1] == ("escalation", chase.due_at) and kinds[2] == ("escalation", chase.due_at + timedelta(days=2))


def test_a_worker_without_config_says_where_it_runs_before_connecting(tmp_path: Path) -> None:
    proc = run_py([str(REPO / "worker.py")], tmp_path, CLOSELOOP_DATA_DIR=str(tmp_path / "data"),
                  CLOSELOOP_TEMPORAL_ADDRESS="127.0.0.1:1")
    assert proc.returncode == EXIT_UNAVAILABLE, proc.stderr[-2000:]
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    starting = [r for r in records if r["event"] == "worker starting"]
    assert starting, proc.stderr[-2000:]
    assert starting[0]["address"] == "127.0.0.1:1" and starting[0]["namespace"] == "default"
    assert starting[0]["task_queue"] == "closeloop" and starting[0]["config"].startswith("built-in defaults")
    errors = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert len(errors) == 1 and errors[0].startswith("closeloop worker: cannot reach Temporal at 127.0.0.1:1"), errors



def test_a_metrics_port_in_use_is_one_line_naming_the_setting() -> None:
    """The worker's metrics port taken (two workers on one machine): PortInUse, which the worker and `closeloop
    dev` print as one line (exit 2), naming the port and how to change it."""
    import asyncio
    import socket

    from closeloop.cli.main import explain
    from closeloop.telemetry import PortInUse, serve_in_background, worker_app

    async def nothing() -> bytes:
        return b""

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = worker_app(metrics=nothing, checks=[], tokens=())
        with pytest.raises(PortInUse) as found:
            asyncio.run(serve_in_background(app, "127.0.0.1", port))
    message = str(found.value)
    assert f"127.0.0.1:{port}" in message and "CLOSELOOP_METRICS_PORT" in message and "\n" not in message
    assert explain(found.value) == (message, EXIT_BAD_INPUT)
