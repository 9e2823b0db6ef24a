"""A worker SIGKILLed while it creates tickets on a real tracker API (the stand-in, through the real client
library): the tracker has created the issues, but the worker never learned their keys. The retried
activity finds each issue by its marker, so every action item ends with exactly one ticket. Jira and
GitHub alike."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from closeloop.models import Stage
from closeloop.standins.github import GitHubStandin
from closeloop.standins.jira import JiraStandin
from tests.devserver.conftest import DevApp, dev_app_with
from tests.devserver.test_crash import ITEMS, REVIEWERS, Lifecycle
from tests.standins.fixtures import GITHUB_SPEC, JIRA_SPEC, validated

pytestmark = pytest.mark.devserver

CREATE_DELAY = 6.0  # seconds the stand-in takes to create: the window in which the worker dies
REPO = "acme/checkout"
PEOPLE = ("alice", "bob", "erin")


@dataclass
class Tracker:
    name: str
    server: Any
    config: str
    env: dict[str, str]
    create_route: str  # as the stand-in counts requests ("METHOD /template")
    delay_path: str  # as its faults name routes
    issues: Callable[[], dict[str, dict[str, Any]]]  # ticket key -> record
    body: Callable[[dict[str, Any]], str]
    title: Callable[[dict[str, Any]], str]


@pytest.fixture(params=["jira", "github"])
def tracker(request: pytest.FixtureRequest) -> Iterator[Tracker]:
    if request.param == "jira":
        with validated(JiraStandin, JIRA_SPEC, project="CL", users={f"acc-{p}": p.title() for p in PEOPLE}) as jira:
            yield Tracker(
                name="jira", server=jira,
                config=f'[trackers.jira]\nurl = "{jira.url}"\nproject = "CL"\ntimeout = 3.0\n',
                env={"CLOSELOOP_JIRA_EMAIL": "bot@example.com", "CLOSELOOP_JIRA_API_TOKEN": "not-a-real-token"},
                create_route="POST /rest/api/2/issue", delay_path="/rest/api/2/issue",
                issues=lambda: jira.issues, body=lambda i: i["description"] or "", title=lambda i: i["summary"])
    else:
        with validated(GitHubStandin, GITHUB_SPEC) as gh:
            gh.add_repo(REPO, collaborators=[f"{p}-gh" for p in PEOPLE])
            yield Tracker(
                name="github", server=gh,
                config=f'[trackers.github]\nbase_url = "{gh.base_url}"\nrepo = "{REPO}"\ntimeout = 3.0\n',
                env={"CLOSELOOP_GITHUB_TOKEN": "not-a-real-token"},
                create_route="POST /repos/{owner}/{repo}/issues", delay_path="POST /repos/{owner}/{repo}/issues",
                issues=lambda: {f"{REPO}#{n}": i for n, i in gh.repos[REPO]["issues"].items()},
                body=lambda i: i["body"] or "", title=lambda i: i["title"])


@pytest.fixture
def tracker_dev_app(dev_env: WorkflowEnvironment, tmp_path: Path, tracker: Tracker) -> Iterator[DevApp]:
    extra = f'\n[services.checkout.policy]\ntracker = "{tracker.name}"\n\n{tracker.config}'
    for person in PEOPLE:
        extra += f'\n[people.{person}.handles]\njira = "acc-{person}"\ngithub = "{person}-gh"\n'
    with dev_app_with(dev_env, tmp_path, extra_config=extra, extra_env=tracker.env) as app:
        yield app


async def _until(what: str, pred: Callable[[], bool], timeout: float, lc: Lifecycle) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{lc.diagnostics()}")
        await asyncio.sleep(0.02)


async def test_worker_killed_while_the_tracker_creates_tickets_leaves_one_per_item(
    tracker_dev_app: DevApp, tracker: Tracker,
) -> None:
    app, server = tracker_dev_app, tracker.server
    lc = Lifecycle(app)
    app.workers.start()
    app.workers.wait_ready()
    await lc.start()
    await lc.wait_stage(Stage.drafting)
    for _ in ITEMS:  # every create answers slowly, so the kill lands while creates are in flight
        server.delay_next(CREATE_DELAY, path=tracker.delay_path)
    await lc.submit_draft()
    await lc.wait_stage(Stage.in_review)
    for reviewer in REVIEWERS:
        await lc.approve(reviewer)

    creates = tracker.create_route
    await _until("a create in flight", lambda: server.requests[creates] >= 1, 120, lc)
    app.workers.kill("create in flight")
    lc.mark(f"worker killed with {server.requests[creates]} create(s) in flight, {len(tracker.issues())} issue(s)")
    in_flight = server.requests[creates]
    # The stand-in finishes what it was asked: the issues exist, their keys never reached a worker.
    await asyncio.sleep(CREATE_DELAY + 2)
    orphans = len(tracker.issues())
    assert orphans >= 1, lc.diagnostics()
    lc.mark(f"{orphans} of {in_flight} in-flight create(s) landed with nobody to record them")

    app.workers.start()
    app.workers.wait_ready()
    for n in range(1, len(ITEMS) + 1):
        await lc.wait_tracking(n, timeout=150)

    issues = tracker.issues()
    markers = [m.group(1) for i in issues.values() if (m := re.search(r"(closeloop:\S+?/item-\d+)", tracker.body(i)))]
    items = {i.id: i for i in app.store.records.action_items(lc.pm)}
    assert len(issues) == len(ITEMS), lc.diagnostics()  # exactly one issue per item
    assert sorted(markers) == sorted(f"closeloop:{item_id}" for item_id in items)
    assert sorted(i.ticket_key for i in items.values()) == sorted(issues)
    assert all(tracker.title(issues[i.ticket_key]) == i.title for i in items.values())
    # the retries looked the orphans up instead of creating again: one create per item, plus one for each
    # in-flight create that did not land (if any)
    assert server.requests[creates] == len(ITEMS) + (in_flight - orphans)
