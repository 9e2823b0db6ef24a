"""The reduced form of the chaos benchmark (bench/chaos.py, run here as a user would run it): lifecycles on
two `python worker.py` processes and a PostgreSQL store, while workers are SIGKILLed, the Temporal dev server
is killed -9 and started again, PostgreSQL is cut off and the Jira tracker answers 503. Every lifecycle must
complete with exactly one ticket per item and no notification, meeting or invite twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.devserver, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]


def test_lifecycles_complete_exactly_once_through_kills_and_outages() -> None:
    cmd = [sys.executable, "bench/chaos.py", "--n", "6", "--kills", "6", "--kill-every", "4", "--tracker-at", "0",
           "--tracker-outage", "10", "--temporal-at", "8", "--temporal-down", "3", "--pg-at", "20",
           "--pg-outage", "15", "--timeout", "420", "--seed", "9", "--json"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode in (0, 2), run.stderr[-3000:]
    figures = json.loads(run.stdout)
    where = f"{json.dumps(figures, indent=1)}\n{run.stderr[-3000:]}"
    assert figures["completed"] == figures["lifecycles"] == 6, where
    assert figures["effective_items"] == figures["items"] == 12, where
    assert figures["worker_kills"] >= 6 and figures["temporal_restarts"] == 1, where
    assert figures["pg_outage_seconds"] == 15 and figures["tracker_outage_seconds"] == 10, where
    assert figures["tracker_requests_failed"] > 0, where  # the outage was felt
    assert figures["tickets"] == 12 and figures["duplicate_tickets"] == 0 and figures["missing_tickets"] == 0, where
    assert figures["duplicate_notifications"] == 0 and figures["notifications"] > 0, where
    assert figures["meetings"] == 6 and figures["duplicate_meetings"] == 0 and figures["duplicate_invites"] == 0, where
    assert figures["ok"] and run.returncode == 0, where
