"""`closeloop dev` serves the web app beside the worker: /healthz answers, a signed PagerDuty webhook starts
a lifecycle that the dev command's own worker runs, a duplicate starts nothing, endpoints whose secret is
not set answer 401 with a JSON reason, and SIGTERM stops the web app, the worker and the dev server.
Started again with --no-web, nothing listens on the web port and the lifecycle is still there."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from closeloop.models import Stage
from closeloop.workflows.postmortem import PostmortemWorkflow

REPO = Path(__file__).resolve().parents[2]
SECRET = "pd-dev-secret-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _start(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([str(REPO / ".venv" / "bin" / "closeloop"), "dev", *args], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(proc: subprocess.Popen[bytes], log: Path, text: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while text not in (out := log.read_text(errors="replace")):
        assert proc.poll() is None, f"closeloop dev exited with {proc.returncode}:\n{out[-3000:]}"
        assert time.monotonic() < deadline, f"{text!r} not printed within {timeout}s:\n{out[-3000:]}"
        time.sleep(0.2)
    return out


def _stop(proc: subprocess.Popen[bytes], sig: int) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def _signed(payload: dict) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    mac = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-PagerDuty-Signature": f"v1={mac}"}


RESOLVED = {"event": {
    "id": "01DEVWEB5AC64822", "event_type": "incident.resolved", "resource_type": "incident",
    "occurred_at": "2026-10-02T18:45:22.169Z", "agent": None, "client": {"name": "PagerDuty"},
    "data": {"id": "PDEVWEB1", "type": "incident", "number": 7, "status": "resolved",
             "html_url": "https://acme.pagerduty.com/incidents/PDEVWEB1", "title": "Checkout returns 500s",
             "created_at": "2026-10-02T18:05:00Z", "urgency": "high",
             "service": {"id": "PF9KMXH", "summary": "checkout", "type": "service_reference"},
             "priority": {"id": "PSO75BM", "summary": "P2", "type": "priority_reference"}},
}}
WID = "postmortem/pagerduty/PDEVWEB1"


async def _drafting(address: str) -> tuple[str, str, list[str]]:
    client = await Client.connect(address, namespace="default", data_converter=pydantic_data_converter)
    handle = client.get_workflow_handle_for(PostmortemWorkflow.run, WID)
    deadline = time.monotonic() + 60
    state = None
    while time.monotonic() < deadline:
        try:
            state = await handle.query(PostmortemWorkflow.state)
            if state is not None and state.stage == Stage.drafting:
                inc = state.plan.incident
                return inc.title, inc.severity, inc.services
        except Exception:  # noqa: BLE001 - the worker has not run the first task yet
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"{WID} did not reach drafting; last state {state!r:.500}")


async def _exists(address: str) -> bool:
    client = await Client.connect(address, namespace="default", data_converter=pydantic_data_converter)
    desc = await client.get_workflow_handle(WID).describe()
    return desc.id == WID


@pytest.mark.devserver
def test_closeloop_dev_serves_the_web_app(tmp_path: Path) -> None:
    port, ui_port, web_port = _free_port(), _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSELOOP_")}
    env.update(CLOSELOOP_TEMPORAL_ADDRESS=f"127.0.0.1:{port}", CLOSELOOP_UI_PORT=str(ui_port),
               CLOSELOOP_WEB_PORT=str(web_port), CLOSELOOP_PAGERDUTY_SECRETS=SECRET)
    address = f"127.0.0.1:{port}"
    args = ["--data-dir", str(tmp_path / "data")]
    base = f"http://127.0.0.1:{web_port}"

    log = tmp_path / "dev.log"
    dev = _start(args, env, tmp_path, log)
    try:
        out = _wait_for(dev, log, "worker running")
        assert f"web app on {base}" in out
        assert "no_api_tokens" in out  # the unset secrets are named at start, their values never are
        with httpx.Client(base_url=base, timeout=10) as http:
            r = http.get("/healthz")
            assert (r.status_code, r.json()) == (200, {"ok": True})

            body, headers = _signed(RESOLVED)
            first = http.post("/webhooks/pagerduty", content=body, headers=headers)
            assert first.status_code == 202, first.text
            assert first.json() == {"workflow_id": WID, "new": True}
            again = http.post("/webhooks/pagerduty", content=body, headers=headers)
            assert again.json() == {"workflow_id": WID, "new": False}

            r = http.post("/webhooks/pagerduty", content=body, headers={"Content-Type": "application/json"})
            assert (r.status_code, r.json()) == (401, {"error": "missing X-PagerDuty-Signature"})
            r = http.post("/api/incidents", json={"external_id": "X1", "title": "t"},
                          headers={"Authorization": "Bearer guess"})
            assert r.status_code == 401
            assert "CLOSELOOP_API_TOKENS" in r.json()["error"]

        # the dev command's own worker runs the lifecycle the webhook started
        title, severity, services = asyncio.run(_drafting(address))
        assert (title, severity, services) == ("Checkout returns 500s", "SEV2", ["checkout"])
    finally:
        code = _stop(dev, signal.SIGTERM)
    out = log.read_text(errors="replace")
    assert code == 0, out[-3000:]
    assert "web app and worker stopped; stopping the Temporal dev server..." in out
    assert "Traceback" not in out and SECRET not in out
    assert not _listening(web_port) and not _listening(port)

    # again, without the web app: the lifecycle is still there (persistent state), the web port stays closed
    log2 = tmp_path / "dev-no-web.log"
    dev = _start([*args, "--no-web"], env, tmp_path, log2)
    try:
        out = _wait_for(dev, log2, "worker running")
        assert "web app on" not in out
        assert not _listening(web_port)
        assert asyncio.run(_exists(address))
    finally:
        code = _stop(dev, signal.SIGINT)
    out = log2.read_text(errors="replace")
    assert code == 0, out[-3000:]
    assert "worker stopped; stopping the Temporal dev server..." in out
    assert not _listening(port)
