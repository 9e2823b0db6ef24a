"""Lifecycles whose action items are GitHub issues: the real worker and activities, PyGithub over HTTP, and
the GitHub REST stand-in (every response validated against GitHub's OpenAPI description).

Tickets open once in the service's repository with the configured labels, milestone (by title) and the
owner's login; reminders and escalations land as comments once each; an outage or a lost create response
delays the ticket and never doubles it; and issue + comment creation stays under the configured
per-minute limit across the whole installation (the store's rate slots), the extra attempts waiting
through the activity's retry."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from closeloop.integrations.github.tracker import GitHubTracker, marker_tag
from closeloop.integrations.registry import Integrations
from closeloop.models import ActionItemSpec, Stage
from closeloop.standins.github import GitHubStandin
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.standins.fixtures import GITHUB_SPEC, FakeClock, validated
from tests.temporal_env import DAY, App, eventually, incident, running_app
from tests.workflows.drive import approve_all, draft, to_following_up

CHECKOUT_REPO, DEFAULT_REPO = "acme/checkout", "acme/ops"
MILESTONE = "Postmortem follow-ups"
_COMMENT_KEY = re.compile(r"<!-- closeloop-comment: (.+?) -->")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def github(clock: FakeClock) -> Iterator[GitHubStandin]:
    with validated(GitHubStandin, GITHUB_SPEC, clock=lambda: clock().timestamp()) as server:
        server.add_repo(CHECKOUT_REPO, collaborators=["bob-gh"], milestones={2: "Q4", 5: MILESTONE})
        server.add_repo(DEFAULT_REPO, collaborators=["bob-gh"])
        yield server


def github_config(gh: GitHubStandin, extra: str = "") -> str:
    return f"""
[services.checkout.policy]
tracker = "github"

[people.bob.handles]
github = "bob-gh"

[trackers.github]
base_url = "{gh.base_url}"
repo = "{DEFAULT_REPO}"
labels = ["postmortem"]
timeout = 2.0
{extra}

[trackers.github.services.checkout]
repo = "{CHECKOUT_REPO}"
milestone = "{MILESTONE}"
"""


@pytest_asyncio.fixture
async def github_app(time_env: WorkflowEnvironment, tmp_path: Path, github: GitHubStandin) -> AsyncIterator[App]:
    async with running_app(time_env, tmp_path, extra=github_config(github)) as app:
        yield app


def all_issues(gh: GitHubStandin) -> list[tuple[str, dict[str, Any]]]:
    return [(name, issue) for name, repo in gh.repos.items() for issue in repo["issues"].values()]


def comment_keys(issue: dict[str, Any]) -> list[str]:
    return [m.group(1) for c in issue["comments"] for m in [_COMMENT_KEY.search(c["body"])] if m]


async def test_action_items_become_github_issues_in_the_service_repository(github_app: App,
                                                                           github: GitHubStandin) -> None:
    app = github_app
    inc = incident()
    github.fail_next(2, status=503)  # GitHub is down when the ticket is first tried: delayed, not failed
    handle = await app.resolve(inc)
    await app.wait_stage(handle, Stage.drafting)
    await handle.execute_update(PostmortemWorkflow.submit_draft, draft(
        ActionItemSpec(title="Validate config before push", owner="bob", priority="P1", kind="prevent"),
        ActionItemSpec(title="Alert on checkout 5xx rate", owner="alice", priority="P2", kind="detect")))
    await app.wait_stage(handle, Stage.in_review)
    await approve_all(handle)
    state = await app.wait_for(handle, lambda s: len(s.items) == 2 and all(i.ticket_key for i in s.items),
                               timeout=60)
    bob_item, alice_item = state.items
    assert {i.tracker for i in state.items} == {"github"}
    assert (bob_item.ticket_key, alice_item.ticket_key) == (f"{CHECKOUT_REPO}#1", f"{CHECKOUT_REPO}#2") or \
        (bob_item.ticket_key, alice_item.ticket_key) == (f"{CHECKOUT_REPO}#2", f"{CHECKOUT_REPO}#1")
    assert github.repos[DEFAULT_REPO]["issues"] == {}
    assert len(all_issues(github)) == 2  # one issue per item
    issues = github.repos[CHECKOUT_REPO]["issues"]
    bob_issue = issues[int(bob_item.ticket_key.split("#")[1])]
    alice_issue = issues[int(alice_item.ticket_key.split("#")[1])]
    assert bob_item.ticket_url == f"{github.url}/{bob_item.ticket_key.replace('#', '/issues/')}"
    assert bob_issue["title"] == "Validate config before push"
    assert bob_issue["labels"] == ["closeloop", "postmortem", "postmortem-prevent"]
    assert alice_issue["labels"] == ["closeloop", "postmortem", "postmortem-detect"]
    assert bob_issue["assignees"] == ["bob-gh"] and alice_issue["assignees"] == []  # alice has no github login
    assert bob_issue["milestone"] == 5 == alice_issue["milestone"]
    assert github.requests["GET /repos/{owner}/{repo}/milestones"] == 1  # the title is looked up once
    document = app.store.records.get_postmortem(bob_item.postmortem_id).document_ref  # type: ignore[union-attr]
    assert document and f"Postmortem: {document}" in bob_issue["body"]  # back to the published document
    assert f"Incident: {inc.title} [{inc.key}]" in bob_issue["body"]
    assert bob_issue["body"].rstrip().endswith(marker_tag(f"closeloop:{bob_item.id}"))

    # bob's item goes overdue: the reminder(s) and the escalation land on its issue as comments, once each
    await app.env.sleep(7 * DAY + timedelta(hours=1))
    await app.wait_for(app.client.get_workflow_handle(bob_item.id), lambda s: s.chase.escalations_sent >= 1)
    keys = comment_keys(bob_issue)
    sent = [n.key for n in app.store.local.notifications(bob_item.postmortem_id) if n.item_id == bob_item.id]
    assert sorted(keys) == sorted(sent) and len(set(keys)) == len(keys)
    assert f"{bob_item.id}/opened" in keys
    assert sum("/reminder/" in k for k in keys) >= 1 and sum("/escalation/" in k for k in keys) == 1
    assert len(all_issues(github)) == 2


async def test_lost_create_response_still_gives_the_item_one_issue(github_app: App, github: GitHubStandin) -> None:
    """The issue is created but the answer never arrives: the activity's retry finds it by its marker."""
    github.lose_next_create_response()
    _, state = await to_following_up(github_app, incident(), ActionItemSpec(title="Validate config", owner="bob"))
    item = state.items[0]
    assert item.ticket_key == f"{CHECKOUT_REPO}#1"
    assert github.requests["POST /repos/{owner}/{repo}/issues"] == 1  # the retry created nothing
    assert len(all_issues(github)) == 1
    retry_hits = github.requests["GET /search/issues"]
    assert retry_hits >= 2  # looked up first, then again by the retry


LIMIT = 2


@pytest_asyncio.fixture
async def paced_app(time_env: WorkflowEnvironment, tmp_path: Path, github: GitHubStandin,
                    clock: FakeClock) -> AsyncIterator[App]:
    def paced(integrations: Integrations) -> None:
        tracker = integrations.tracker("github")
        assert isinstance(tracker, GitHubTracker) and tracker.store is integrations.store
        tracker.clock = clock  # the pacing's "now" moves with the test, not with the wall

    async with running_app(time_env, tmp_path, extra=github_config(github, f"content_per_minute = {LIMIT}"),
                           adjust=paced) as app:
        yield app


async def test_content_creation_stays_under_the_limit_and_extra_attempts_wait(paced_app: App,
                                                                              github: GitHubStandin,
                                                                              clock: FakeClock) -> None:
    """Three items = three issues + three "opened" comments, with 2 allowed a minute: the extra attempts
    are retried no sooner than the wait the store gave, everything is created exactly once, and the stand-in
    never sees more than 2 in any 60 s."""
    app = paced_app
    handle = await app.resolve(incident())
    await app.wait_stage(handle, Stage.drafting)
    await handle.execute_update(PostmortemWorkflow.submit_draft, draft(
        *(ActionItemSpec(title=f"Item {n}", owner="bob", priority="P2") for n in range(3))))
    await app.wait_stage(handle, Stage.in_review)
    await approve_all(handle)

    def created() -> list[float]:
        return sorted([i["created"] for _, i in all_issues(github)]
                      + [c["created"] for _, i in all_issues(github) for c in i["comments"]])

    await eventually(lambda: len(created()) == LIMIT)
    state = await app.wait_for(handle, lambda s: len(s.items) == 3)

    async def paced() -> dict[tuple[str, str], tuple[int, float, float]]:
        """(item, activity) -> (attempt, retry delay the failure asked for, wait the store gave) of every
        attempt refused by the pacing and waiting for its retry."""
        found = {}
        for item in state.items:
            desc = (await app.client.get_workflow_handle(item.id).describe()).raw_description
            for pending in desc.pending_activities:
                failure = pending.last_failure
                m = re.search(r"retry in ([\d.]+)s", failure.message)
                if m:
                    delay = failure.application_failure_info.next_retry_delay.ToTimedelta().total_seconds()
                    found[(item.id, pending.activity_type.name)] = (pending.attempt, delay, float(m.group(1)))
        return found

    for minute in (1, 2):
        previous: dict[tuple[str, str], tuple[int, float, float]] = {}
        for _ in range(100):  # every item not done (issue + its comment) has a refused attempt waiting, settled
            waiting = await paced()
            done = sum(1 for _, i in all_issues(github) if i["comments"])
            if waiting and len(waiting) + done == 3 and waiting == previous:
                break
            previous = waiting
            await asyncio.sleep(0.5)
        assert waiting and len(waiting) + done == 3, waiting
        # each asks Temporal for a retry no sooner than the store's wait (the slots free a minute on)
        assert all(delay >= wait >= 59 for _, delay, wait in waiting.values()), waiting
        # the refusals happened up to ~10 s of server time ago: 45 s more stays short of their 60 s wait, and
        # far past the retry policy's own backoff (5 s)
        await app.env.sleep(45)
        assert await paced() == waiting  # no attempt was retried early
        assert len(created()) == LIMIT * minute  # and nothing more went out
        clock.advance(61)  # the minute has passed: the retries that fire now find free slots
        await app.env.sleep(20)
        await eventually(lambda minute=minute: len(created()) == LIMIT * (minute + 1), timeout=30)

    final = await app.wait_for(handle, lambda s: len(s.items) == 3 and all(i.ticket_key for i in s.items))
    assert len(all_issues(github)) == 3 and github.requests["POST /repos/{owner}/{repo}/issues"] == 3
    assert sorted(i.ticket_key for i in final.items) == [f"{CHECKOUT_REPO}#{n}" for n in (1, 2, 3)]
    for _, issue in all_issues(github):
        assert len(issue["comments"]) == 1  # the "opened" comment, once
    stamps = created()
    assert len(stamps) == 6
    assert max(sum(1 for t in stamps if start <= t < start + 60) for start in stamps) <= LIMIT
