"""The tracker down for an hour (simulated on the time-skipping server): the ticket activity keeps retrying
with backoff (no hot loop, nothing given up), and once GitHub answers again every action item gets exactly
one issue. The real worker and activities, PyGithub over HTTP, the GitHub stand-in validated against GitHub's
OpenAPI description. bench/chaos.py runs the same outage in real time on the dev server, beside worker kills,
a Temporal restart and a PostgreSQL outage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from closeloop.models import ActionItemSpec, Stage
from closeloop.standins.github import GitHubStandin
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.standins.fixtures import GITHUB_SPEC, validated
from tests.temporal_env import App, incident, running_app
from tests.workflows.drive import approve_all, draft

REPO = "acme/checkout"
ITEMS = (ActionItemSpec(title="Validate config before push", owner="bob", priority="P1", kind="prevent"),
         ActionItemSpec(title="Alert on checkout 5xx rate", owner="erin", priority="P2", kind="detect"))


@pytest.fixture
def github() -> Iterator[GitHubStandin]:
    with validated(GitHubStandin, GITHUB_SPEC) as server:
        server.add_repo(REPO, collaborators=["bob-gh", "erin-gh"])
        yield server


@pytest_asyncio.fixture
async def app(time_env: WorkflowEnvironment, tmp_path: Path, github: GitHubStandin) -> AsyncIterator[App]:
    extra = f"""
[services.checkout.policy]
tracker = "github"

[people.bob.handles]
github = "bob-gh"

[people.erin.handles]
github = "erin-gh"

[trackers.github]
base_url = "{github.base_url}"
repo = "{REPO}"
timeout = 2.0
"""
    async with running_app(time_env, tmp_path, extra=extra) as running:
        yield running


async def _until(what: str, check: callable, timeout: float = 30.0) -> None:  # type: ignore[valid-type]
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_an_hour_long_tracker_outage_delays_the_tickets_and_never_doubles_them(
    app: App, github: GitHubStandin,
) -> None:
    handle = await app.resolve(incident())
    await app.wait_stage(handle, Stage.drafting)
    await handle.execute_update(PostmortemWorkflow.submit_draft, draft(*ITEMS))
    await app.wait_stage(handle, Stage.in_review)

    github.outage(24 * 3600)  # down, in real time, until restored below
    await approve_all(handle)
    await _until("the first ticket attempts to fail", lambda: github.outage_failures >= len(ITEMS))
    tried_at_start = github.outage_failures

    for _ in range(12):  # an hour, five minutes at a time: every retry timer due in it fires
        await app.env.sleep(timedelta(minutes=5))
        await asyncio.sleep(0.2)  # let the worker run what fell due
    failed_in_the_hour = github.outage_failures - tried_at_start
    state = await handle.query(PostmortemWorkflow.state)
    assert state is not None and not any(i.ticket_key for i in state.items), "no ticket while GitHub is down"
    assert github.repos[REPO]["issues"] == {}
    # Retried through the hour with backoff (5 s doubling to 10 min: about a dozen attempts per item, each
    # maybe retried once by the client), never a hot loop, never given up.
    print(f"\ntracker down for a simulated hour: {failed_in_the_hour} requests failed for {len(ITEMS)} items")
    assert len(ITEMS) * 4 <= failed_in_the_hour <= len(ITEMS) * 40, failed_in_the_hour

    github.restore()
    for _ in range(3):  # the next retry is at most 10 minutes away
        await app.env.sleep(timedelta(minutes=5))
        await asyncio.sleep(0.2)
    state = await app.wait_for(handle, lambda s: len(s.items) == len(ITEMS) and all(i.ticket_key for i in s.items),
                               timeout=60)
    issues = github.repos[REPO]["issues"]
    assert len(issues) == len(ITEMS)  # exactly one issue per item
    assert sorted(i.ticket_key for i in state.items) == sorted(f"{REPO}#{n}" for n in issues)
    assert sorted(issue["title"] for issue in issues.values()) == sorted(spec.title for spec in ITEMS)
