"""`closeloop standin jira|github`: serves a stand-in on the port asked for, prints the config section that
points closeloop at it, stops on SIGTERM; bad input is one line and exit 2."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from closeloop.standins.spec import SPECS_DIR, ResponseValidator

CLI = [sys.executable, "-m", "closeloop.cli.main"]
ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen([*CLI, "standin", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(6)]
    return proc, lines


def answers(validator: ResponseValidator, base_url: str, calls: list[tuple[str, str, Any, int]],
            **kw: Any) -> list[Any]:
    """The bodies of (method, path, JSON payload, status) requests to the stand-in, each answered with that
    status and a body valid against the spec."""
    bodies = []
    for method, path, payload, status in calls:
        response = requests.request(method, base_url + path, json=payload, timeout=5, **kw)
        assert response.status_code == status, response.text
        validator.check(method, path, status, response.json())
        bodies.append(response.json())
    return bodies


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_github_standin_serves_what_it_prints() -> None:
    validator = ResponseValidator(SPECS_DIR / "github-rest-api.json")
    port = free_port()
    proc, lines = serve("github", "--port", str(port), "--repo", "acme/ops", "--repo", "acme/api",
                        "--collaborator", "bob-gh", "--milestone", "Postmortem follow-ups")
    try:
        assert lines[0].startswith(f"github stand-in on http://127.0.0.1:{port} "), lines
        base_url = f"http://127.0.0.1:{port}/api/v3"
        assert f'base_url = "{base_url}"\n' in lines and 'repo = "acme/ops"\n' in lines
        calls = [("GET", "/repos/acme/api", None, 200), ("GET", "/repos/acme/api/milestones", None, 200),
                 ("POST", "/repos/acme/api/issues", {"title": "t", "assignees": ["bob-gh"], "milestone": 1}, 201)]
        bodies = answers(validator, base_url, calls, headers={"Authorization": "token anything"})
        assert [m["title"] for m in bodies[1]] == ["Postmortem follow-ups"]
        assert bodies[2]["number"] == 1 and bodies[2]["assignees"][0]["login"] == "bob-gh"
    finally:
        stop(proc)


def test_jira_standin_serves_what_it_prints() -> None:
    validator = ResponseValidator(SPECS_DIR / "jira-platform-v3.json")
    port = free_port()
    proc, lines = serve("jira", "--port", str(port), "--project", "CL", "--project", "PAY=Payments",
                        "--user", "acc-bob=Bob", "--component", "PAY:checkout-api")
    try:
        assert lines[0].startswith(f"jira stand-in on http://127.0.0.1:{port} "), lines
        url = f"http://127.0.0.1:{port}"
        assert f'url = "{url}"\n' in lines and 'project = "CL"\n' in lines
        fields = {"project": {"key": "PAY"}, "issuetype": {"name": "Task"}, "summary": "s",
                  "assignee": {"accountId": "acc-bob"}, "components": [{"name": "checkout-api"}]}
        calls = [("GET", "/rest/api/2/serverInfo", None, 200), ("POST", "/rest/api/2/issue", {"fields": fields}, 201),
                 ("GET", "/rest/api/2/issue/PAY-1", None, 200)]
        bodies = answers(validator, url, calls, auth=("me@example.com", "x"))
        assert bodies[1]["key"] == "PAY-1"
        assert bodies[2]["fields"]["components"][0]["name"] == "checkout-api"
        assert bodies[2]["fields"]["project"]["key"] == "PAY"
    finally:
        stop(proc)


@pytest.mark.parametrize(("args", "message"), [
    (["github", "--repo", "not-a-repo"], "--repo: expected OWNER/NAME, got 'not-a-repo'"),
    (["jira", "--component", "NOPE:x"], "--component: expected PROJECT:NAME with a --project key"),
    (["gitlab"], "Invalid value for '{jira|github|oidc}'"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = subprocess.run([*CLI, "standin", *args], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("closeloop: ") and message in lines[0], done.stderr
