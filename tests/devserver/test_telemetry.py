"""The worker process's /metrics, /healthz and /readyz, on the real dev server: a scrape from a `python worker.py`
process that ran a lifecycle, asserting on named series (closeloop's and the Temporal SDK's through the runtime's
Prometheus exporter); the metrics token; readiness that fails while the database or Temporal cannot be reached."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from temporalio.testing import WorkflowEnvironment

from closeloop import search_attributes as sa
from closeloop.client import start_postmortem
from closeloop.telemetry import free_loopback_port
from tests.devserver.conftest import dev_app_with
from tests.metrics_text import series
from tests.temporal_env import _binary, incident

TOKEN = "metrics-token-0123456789"


async def until(check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.2)


async def test_the_workers_metrics_and_health(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    extra_env = {"CLOSELOOP_METRICS_PORT": str(port), "CLOSELOOP_METRICS_TOKEN": TOKEN}
    with dev_app_with(dev_env, tmp_path, extra_env=extra_env) as app:
        app.workers.start()
        app.workers.wait_ready()
        inc = incident(title="Checkout returns 500s")
        assert (await start_postmortem(dev_env.client, app.task_queue, inc)).new

        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            assert (await http.get("/healthz")).json() == {"ok": True}
            ready = await http.get("/readyz")
            assert ready.status_code == 200 and ready.json() == {"ready": True, "problems": []}
            assert (await http.get("/metrics")).status_code == 401  # a token is set: loopback is not enough
            auth = {"Authorization": f"Bearer {TOKEN}"}

            async def drafting() -> dict | None:  # type: ignore[type-arg]
                response = await http.get("/metrics", headers=auth)
                assert response.status_code == 200
                found = series(response.text)
                return found if found.get(("closeloop_lifecycles", (("stage", "drafting"),))) == 1 else None

            found = await until(drafting)
        names = {name for name, _ in found}
        # closeloop's: the lifecycle gauges from the store, the notifications the activities recorded
        assert found[("closeloop_stalled_postmortems", ())] == 0 and found[("closeloop_overdue_items", ())] == 0
        assert found[("closeloop_notifications_total", (("channel", "log"), ("outcome", "recorded")))] >= 4
        # the Temporal SDK's, from the runtime's Prometheus exporter (durations in seconds)
        for sdk in ("temporal_workflow_task_schedule_to_start_latency_bucket",
                    "temporal_activity_schedule_to_start_latency_bucket",
                    "temporal_activity_execution_latency_count", "temporal_worker_task_slots_available",
                    "temporal_sticky_cache_size"):
            assert sdk in names, (sdk, sorted(n for n in names if n.startswith("temporal_"))[:40])
        print("series:", len(found), "names:", sorted(n for n in names if n.startswith(("closeloop_", "temporal_"))))


async def test_readiness_fails_while_the_database_or_temporal_is_down(tmp_path: Path) -> None:
    """A worker of its own on its own dev server and PostgreSQL database: drop the database, stop the server."""
    own = await WorkflowEnvironment.start_local(dev_server_existing_path=_binary("temporal"),
                                                search_attributes=sa.ALL, namespace="default")
    name = f"closeloop_ready_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}?connect_timeout=2"
    port = free_loopback_port()
    stopped = False
    try:
        with dev_app_with(own, tmp_path, extra_env={"CLOSELOOP_METRICS_PORT": str(port),
                                                    "CLOSELOOP_DB_URL": url}) as app:
            app.workers.start()
            app.workers.wait_ready()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as http:
                assert (await http.get("/readyz")).status_code == 200

                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # its connections are ended too
                down = await http.get("/readyz")
                assert down.status_code == 503, down.text
                [problem] = down.json()["problems"]
                assert problem.startswith("database: unreachable ("), problem
                assert (await http.get("/healthz")).status_code == 200  # alive: a restart would not help

                await own.shutdown()  # Temporal goes too
                stopped = True
                down = await http.get("/readyz")
                assert down.status_code == 503
                assert [p.split(":")[0] for p in down.json()["problems"]] == ["temporal", "database"]
                metrics = await http.get("/metrics")  # loopback, no token: still served, without the gauges
                assert metrics.status_code == 200 and "closeloop_gauge_read_errors" in metrics.text
    finally:
        if not stopped:
            await own.shutdown()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
