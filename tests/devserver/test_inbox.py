"""The durable inbox on the real Temporal dev server: an incident Temporal refuses as invalid is answered like
any other (202; Temporal's error text stays internal), kept as `refused` with the reason and never tried
again; and a two-minute Temporal outage loses nothing: 500 signed PagerDuty webhooks that arrive while the
dev server is stopped are all answered 202, and after it restarts there is exactly one lifecycle each."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from closeloop.cli.dev import stop_process
from closeloop.client import Closeloop
from closeloop.search_attributes import dev_server_flags
from closeloop.standins.spec import SPECS_DIR
from closeloop.store.store import Store
from closeloop.web.app import create_app
from tests.closeloop.web.conftest import LifespanClient, secrets_of, sign
from tests.temporal_env import _binary, make_config

pytestmark = pytest.mark.devserver

TOKEN = "tok-inbox-0123456789"
PD_SECRET = "pd-inbox-signing-secret"


async def until(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not reached within {timeout}s: {what}"
        await asyncio.sleep(0.1)


@asynccontextmanager
async def web_on(client_factory: Callable[[], Any], tmp_path: Path,
                 extra: str = "") -> AsyncIterator[tuple[LifespanClient, Store]]:
    """The web app (its lifespan and forwarder running) on a fresh SQLite store, no worker."""
    config = make_config(tmp_path, task_queue=f"closeloop-inbox-{uuid.uuid4().hex[:8]}", extra=extra)
    store = Store(f"sqlite:///{tmp_path / 'web.db'}")
    app = create_app(config, client_factory, store=store,
                     secrets=secrets_of(api_tokens=(TOKEN,), pagerduty_secrets=(PD_SECRET,)))
    try:
        async with LifespanClient(app) as http:
            yield http, store
    finally:
        store.close()


# --------------------------------------------------------------------------- refused: kept, not retried, not leaked


async def test_a_refused_incident_is_kept_not_retried_and_its_error_text_not_returned(
        dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """The dev server refuses a workflow input over its 2 MB blob limit (INVALID_ARGUMENT): an API incident
    with 12,000 services of 200 characters (the API's body limit raised for it; search attributes are bounded,
    so the input's size is what Temporal refuses). The client still gets the plain 202; the row ends
    `refused` with Temporal's reason for the operator, and the forwarder does not try it again. Another
    incident beside it starts normally."""
    async def factory() -> Client:
        return dev_env.client

    services = [f"service-{n:05d}-" + "x" * 186 for n in range(12_000)]
    big = {"external_id": f"INC-BIG-{uuid.uuid4().hex[:6]}", "title": "Everything is down", "services": services}
    fine = {"external_id": f"INC-OK-{uuid.uuid4().hex[:6]}", "title": "Checkout returns 500s",
            "services": ["checkout"]}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with web_on(factory, tmp_path, extra="\n[web]\nmax_body_bytes = 8388608\n") as (http, store):
        r = await http.post("/api/incidents", json=big, headers=headers)
        assert (r.status_code, r.json()) == (202, {"workflow_id": f"postmortem/api/{big['external_id']}", "new": True})
        r = await http.post("/api/incidents", json=fine, headers=headers)
        assert r.status_code == 202

        def state(external_id: str) -> str | None:
            entry = store.inbox.entry("api", external_id)
            return entry.state if entry else None

        await until("the big one refused", lambda: state(str(big["external_id"])) == "refused", 30)
        await until("the fine one forwarded", lambda: state(str(fine["external_id"])) == "forwarded", 30)
        refused = store.inbox.entry("api", str(big["external_id"]))
        assert refused is not None and refused.attempts == 1
        assert refused.last_error is not None and "exceeds" in refused.last_error and "limit" in refused.last_error

        again = await http.post("/api/incidents", json=big, headers=headers)  # a retry by the sender
        assert (again.status_code, again.json()) == (202, {"workflow_id": f"postmortem/api/{big['external_id']}",
                                                           "new": False})
        assert "limit" not in again.text and "Temporal" not in again.text
        await asyncio.sleep(3 * 1.0 + 0.5)  # three of the forwarder's polls: nothing tries the refused row again
        refused = store.inbox.entry("api", str(big["external_id"]))
        assert refused is not None and (refused.state, refused.attempts) == ("refused", 1)
        closeloop = Closeloop(dev_env.client, "unused")
        assert not await closeloop.exists(f"postmortem/api/{big['external_id']}")
        assert await closeloop.exists(f"postmortem/api/{fine['external_id']}")


# --------------------------------------------------------------------------- a two-minute outage


async def test_forwarding_in_the_worker(tmp_path: Path) -> None:
    """`[inbox] forward_in = "worker"`: the web app only commits and answers (202; its rows stay pending and no
    lifecycle starts, though a forwarder in the app would have started them within milliseconds), and the
    worker (`closeloop.worker.run`, on the same store) forwards them, once each. A dev server of its own: the
    worker applies the closeloop Schedules to the server it runs on."""
    from closeloop import search_attributes as sa
    from closeloop import worker

    async with await WorkflowEnvironment.start_local(
            dev_server_existing_path=_binary("temporal"), data_converter=pydantic_data_converter,
            search_attributes=sa.ALL, namespace="default") as env:
        db_url = f"sqlite:///{tmp_path / 'shared.db'}"
        config = make_config(tmp_path, db_url=db_url, task_queue=f"closeloop-fw-{uuid.uuid4().hex[:8]}",
                             extra='\n[inbox]\nforward_in = "worker"\n')
        config = config.model_copy(update={"temporal": config.temporal.model_copy(
            update={"address": env.client.service_client.config.target_host})})
        assert config.inbox.forward_in == "worker"

        async def factory() -> Client:
            return env.client

        store = Store(db_url)
        ids = [f"INC-FW-{n}" for n in range(3)]
        try:
            app = create_app(config, factory, store=store, secrets=secrets_of(api_tokens=(TOKEN,)))
            async with LifespanClient(app) as http:
                for external_id in ids:
                    r = await http.post("/api/incidents", headers={"Authorization": f"Bearer {TOKEN}"},
                                        json={"external_id": external_id, "title": "Checkout returns 500s"})
                    assert (r.status_code, r.json()["new"]) == (202, True), r.text
                await asyncio.sleep(2.5)  # the app's own forwarder would have been woken by each commit
                assert store.inbox.counts() == {"pending": 3}
            query = f'WorkflowId STARTS_WITH "postmortem/api/INC-FW-" AND TaskQueue = "{config.temporal.task_queue}"'
            assert (await env.client.count_workflows(query)).count == 0

            stop = asyncio.Event()
            running = asyncio.create_task(worker.run(config, stop=stop))
            try:
                await until("the worker forwarded the 3 rows", lambda: store.inbox.counts() == {"forwarded": 3}, 60)
            finally:
                stop.set()
                await asyncio.wait_for(running, 30)
            for external_id in ids:
                description = await env.client.get_workflow_handle(f"postmortem/api/{external_id}").describe()
                assert description.task_queue == config.temporal.task_queue
        finally:
            store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevServer:
    """`temporal server start-dev` on a fixed port with its state in a file: stopped and started again, it
    is the same server (what a restart of a real cluster looks like to the web app)."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.db = tmp_path / "temporal.db"
        self.log = tmp_path / "temporal.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [_binary("temporal"), "server", "start-dev", "--db-filename", str(self.db), "--ip", "127.0.0.1",
                 "--port", str(self.port), "--headless", "--namespace", "default", "--log-level", "warn",
                 *dev_server_flags()], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 30)

    async def client(self, timeout: float = 60.0) -> Client:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text(errors="replace")[-2000:]
            try:
                client = await Client.connect(self.address, namespace="default",
                                              data_converter=pydantic_data_converter)
                await client.count_workflows("WorkflowType = 'PostmortemWorkflow'")
                return client
            except Exception:  # noqa: BLE001 - not up yet
                assert time.monotonic() < deadline, f"dev server not up: {self.log.read_text()[-2000:]}"
                await asyncio.sleep(0.5)


def documented_pagerduty_event(incident_id: str) -> dict[str, Any]:
    """PagerDuty's own v3 webhook payload example (shared/specs/pagerduty-webhooks/01-Overview.md, verbatim),
    as the `incident.resolved` event the same page lists, for incident `incident_id`."""
    doc = (SPECS_DIR / "pagerduty-webhooks" / "01-Overview.md").read_text()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", doc, re.S)]
    example = next(b for b in blocks if isinstance(b, dict) and b.get("event", {}).get("resource_type") == "incident")
    event = copy.deepcopy(example)
    event["event"]["event_type"] = "incident.resolved"
    event["event"]["data"]["status"] = "resolved"
    event["event"]["data"]["id"] = incident_id
    return event


OUTAGE = 120.0  # seconds the dev server is down
DELIVERIES = 500


async def test_a_two_minute_temporal_outage_loses_no_webhook(tmp_path: Path) -> None:
    server = DevServer(tmp_path)
    server.start()
    client = await server.client()
    factory_calls = 0

    async def factory() -> Client:  # what closeloop.serving does: connect to the configured address
        nonlocal factory_calls
        factory_calls += 1
        return await Client.connect(server.address, namespace="default", data_converter=pydantic_data_converter)

    tag = uuid.uuid4().hex[:6].upper()
    try:
        async with web_on(factory, tmp_path) as (http, store):
            async def deliver(incident_id: str) -> Any:
                body = json.dumps(documented_pagerduty_event(incident_id)).encode()
                return await http.post("/webhooks/pagerduty", content=body, headers={
                    "Content-Type": "application/json", "X-PagerDuty-Signature": sign(body, PD_SECRET)})

            # the app is connected and forwarding before the outage
            warm = await deliver(f"PWARM{tag}")
            assert warm.status_code == 202, warm.text
            deadline = time.monotonic() + 60
            while not await Closeloop(client, "unused").exists(f"postmortem/pagerduty/PWARM{tag}"):
                assert time.monotonic() < deadline, "the warm-up delivery's lifecycle never started"
                await asyncio.sleep(0.1)

            server.stop()
            stopped = time.monotonic()
            answers = []
            for n in range(DELIVERIES):  # spread over the outage, as a vendor's traffic would be
                await asyncio.sleep(max(0.0, stopped + n * (OUTAGE - 10) / DELIVERIES - time.monotonic()))
                answer = await deliver(f"POUT{tag}{n:04d}")
                assert answer.status_code == 202, (n, answer.text)
                assert answer.json()["new"] is True
                answers.append(answer)
            assert len(answers) == DELIVERIES
            assert store.inbox.counts() == {"forwarded": 1, "pending": DELIVERIES}  # nothing could start
            await asyncio.sleep(max(0.0, stopped + OUTAGE - time.monotonic()))

            server.start()
            client = await server.client()
            await until("every row forwarded", lambda: store.inbox.counts() == {"forwarded": DELIVERIES + 1}, 120)

        query = f'WorkflowType = "PostmortemWorkflow" AND WorkflowId STARTS_WITH "postmortem/pagerduty/POUT{tag}"'
        deadline = time.monotonic() + 30
        while (count := (await client.count_workflows(query)).count) != DELIVERIES and time.monotonic() < deadline:
            await asyncio.sleep(0.5)  # visibility catches up
        ids = [wf.id async for wf in client.list_workflows(query)]
        assert count == DELIVERIES
        assert sorted(ids) == [f"postmortem/pagerduty/POUT{tag}{n:04d}" for n in range(DELIVERIES)]  # one each
        assert factory_calls == 1  # the same client carried on after the restart
    finally:
        server.stop()
