"""A worker SIGKILLed while it creates a ticket on a real tracker API (the stand-in, through the real
client library): the tracker has created the issue, but the worker never learned its key. The retried
activity finds the issue by its marker, so every action item ends with exactly one ticket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from closeloop.models import Stage
from closeloop.standins.jira import JiraStandin
from tests.devserver.conftest import DevApp, dev_app_with
from tests.devserver.test_crash import ITEMS, REVIEWERS, Lifecycle
from tests.standins.spec import SPECS_DIR, ResponseValidator

pytestmark = pytest.mark.devserver

CREATE_DELAY = 6.0  # seconds the stand-in takes to create: the window in which the worker dies


@pytest.fixture
def jira() -> Iterator[JiraStandin]:
    validator = ResponseValidator(SPECS_DIR / "jira-platform-v3.json")
    users = {"acc-alice": "Alice Owner", "acc-bob": "Bob Reviewer", "acc-erin": "Erin Reviewer"}
    with JiraStandin(project="CL", users=users, validator=validator.check) as server:
        yield server
    assert server.violations == [], "\n".join(server.violations)


@pytest.fixture
def jira_dev_app(dev_env: WorkflowEnvironment, tmp_path: Path, jira: JiraStandin) -> Iterator[DevApp]:
    extra = f"""
[services.checkout.policy]
tracker = "jira"

[trackers.jira]
url = "{jira.url}"
project = "CL"
timeout = 3.0
"""
    for person in ("alice", "bob", "erin"):
        extra += f'\n[people.{person}.handles]\njira = "acc-{person}"\n'
    with dev_app_with(dev_env, tmp_path, extra_config=extra,
                      extra_env={"CLOSELOOP_JIRA_EMAIL": "bot@example.com",
                                 "CLOSELOOP_JIRA_API_TOKEN": "not-a-real-token"}) as app:
        yield app


async def _until(what: str, pred, timeout: float, lc: Lifecycle) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{lc.diagnostics()}")
        await asyncio.sleep(0.02)


async def test_worker_killed_while_jira_creates_the_ticket_leaves_one_issue_per_item(
    jira_dev_app: DevApp, jira: JiraStandin,
) -> None:
    app = jira_dev_app
    lc = Lifecycle(app)
    app.workers.start()
    app.workers.wait_ready()
    await lc.start()
    await lc.wait_stage(Stage.drafting)
    for _ in ITEMS:  # every create answers slowly, so the kill lands while creates are in flight
        jira.delay_next(CREATE_DELAY, path="/rest/api/2/issue")
    await lc.submit_draft()
    await lc.wait_stage(Stage.in_review)
    for reviewer in REVIEWERS:
        await lc.approve(reviewer)

    creates = "POST /rest/api/2/issue"
    await _until("a create in flight", lambda: jira.requests[creates] >= 1, 120, lc)
    app.workers.kill("create in flight")
    lc.mark(f"worker killed with {jira.requests[creates]} create(s) in flight, {len(jira.issues)} issue(s)")
    # The stand-in finishes what it was asked: the issues exist, their keys never reached a worker.
    await _until("the in-flight creates to land", lambda: len(jira.issues) >= jira.requests[creates], 30, lc)
    orphans = len(jira.issues)
    assert orphans >= 1
    lc.mark(f"{orphans} issue(s) created with nobody to record them")

    app.workers.start()
    app.workers.wait_ready()
    for n in range(1, len(ITEMS) + 1):
        await lc.wait_tracking(n, timeout=150)

    markers = [issue["description"].split("closeloop-marker: ")[-1].split()[0] for issue in jira.issues.values()]
    items = {i.id: i for i in app.store.action_items(lc.pm)}
    assert len(jira.issues) == len(ITEMS), lc.diagnostics()  # exactly one issue per item
    assert sorted(markers) == sorted(f"closeloop:{item_id}" for item_id in items)
    assert sorted(i.ticket_key for i in items.values()) == sorted(jira.issues)
    assert all(jira.issues[i.ticket_key]["summary"] == i.title for i in items.values())
    assert jira.requests[creates] == len(ITEMS)  # the retries looked the orphans up instead of creating again
