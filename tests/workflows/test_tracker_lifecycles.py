"""One whole lifecycle per real tracker, configured the way users configure it (`[trackers.jira]` or
`[trackers.github]`, a service's policy naming it): the real worker, activities, `jira` / PyGithub clients
over HTTP and the stand-ins (every response validated against the vendors' specs).

Per tracker: three action items open as three tickets with the right fields; closing a ticket completes its
item; reopening it revokes the completion; closing one as won't do asks the owner why; completing one in
closeloop closes its ticket. Status comes back through the reconciliation sweep (the webhooks have their
own tests in tests/closeloop/web/)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from closeloop.integrations.registry import Integrations
from closeloop.models import ActionItemSpec, CompleteItem, ItemStatus, Stage, WontDoReason
from closeloop.standins.github import GitHubStandin
from closeloop.standins.jira import JiraStandin
from closeloop.workflows.action_item import ActionItemWorkflow
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.standins.fixtures import GITHUB_SPEC, JIRA_SPEC, validated
from tests.temporal_env import App, eventually, incident, running_app
from tests.workflows.drive import approve_all, draft
from tests.workflows.test_ticket_sync import signalled, sweep

REPO = "acme/checkout"
ITEMS = [
    ActionItemSpec(title="Validate config before push", owner="bob", priority="P1", kind="prevent"),
    ActionItemSpec(title="Rewrite the checkout cache", owner="erin", priority="P3", kind="prevent"),
    ActionItemSpec(title="Alert on config drift", owner="alice", priority="P2", kind="detect"),
]
HANDLES = {"alice": ("acc-alice", "alice-gh"), "bob": ("acc-bob", "bob-gh"), "erin": ("acc-erin", "erin-gh")}


@dataclass
class Tracker:
    """What the test needs of one tracker's stand-in: its tickets, and a person's hand on them."""

    name: str
    server: Any
    config: str
    tickets: Callable[[], dict[str, dict[str, Any]]]  # key -> the stand-in's record
    close: Callable[[str], None]
    wont_do: Callable[[str], None]
    reopen: Callable[[str], None]
    closed: Callable[[dict[str, Any]], bool]
    assignee: Callable[[dict[str, Any]], Any]
    body: Callable[[dict[str, Any]], str]


def _jira(server: JiraStandin) -> Tracker:
    return Tracker(
        name="jira", server=server,
        config=f'[trackers.jira]\nurl = "{server.url}"\nproject = "CL"\ntimeout = 2.0\n',
        tickets=lambda: server.issues,
        close=lambda key: server.set_status(key, "Done", "Done"),
        wont_do=lambda key: server.set_status(key, "Done", "Won't Do"),
        reopen=lambda key: server.set_status(key, "To Do"),
        closed=lambda issue: issue["status"] == "Done",
        assignee=lambda issue: issue["assignee"],
        body=lambda issue: issue["description"] or "",
    )


def _github(server: GitHubStandin) -> Tracker:
    def number(key: str) -> int:
        return int(key.rsplit("#", 1)[1])

    return Tracker(
        name="github", server=server,
        config=f'[trackers.github]\nbase_url = "{server.base_url}"\nrepo = "{REPO}"\ntimeout = 2.0\n',
        tickets=lambda: {f"{REPO}#{n}": issue for n, issue in server.repos[REPO]["issues"].items()},
        close=lambda key: server.set_state(REPO, number(key), "closed", "completed"),
        wont_do=lambda key: server.set_state(REPO, number(key), "closed", "not_planned"),
        reopen=lambda key: server.set_state(REPO, number(key), "open"),
        closed=lambda issue: issue["state"] == "closed",
        assignee=lambda issue: issue["assignees"],
        body=lambda issue: issue["body"] or "",
    )


@pytest.fixture(params=["jira", "github"])
def tracker(request: pytest.FixtureRequest) -> Iterator[Tracker]:
    if request.param == "jira":
        users = {jira: person.title() for person, (jira, _gh) in HANDLES.items()}
        with validated(JiraStandin, JIRA_SPEC, project="CL", users=users) as jira_server:
            yield _jira(jira_server)
    else:
        with validated(GitHubStandin, GITHUB_SPEC) as gh_server:
            gh_server.add_repo(REPO, collaborators=[gh for _jira, gh in HANDLES.values()])
            yield _github(gh_server)


@pytest_asyncio.fixture
async def tracker_app(time_env: WorkflowEnvironment, tmp_path: Path, tracker: Tracker) -> AsyncIterator[App]:
    extra = f'[services.checkout.policy]\ntracker = "{tracker.name}"\n\n' + tracker.config
    for person, (jira, gh) in HANDLES.items():
        extra += f'\n[people.{person}.handles]\njira = "{jira}"\ngithub = "{gh}"\n'

    def built_from_config(integrations: Integrations) -> None:
        assert tracker.name in integrations.trackers  # built from the config, not by hand

    async with running_app(time_env, tmp_path, extra=extra, adjust=built_from_config) as app:
        yield app


async def test_tickets_follow_the_items_both_ways(tracker_app: App, tracker: Tracker) -> None:
    app = tracker_app
    inc = incident()
    handle = await app.resolve(inc)
    await app.wait_stage(handle, Stage.drafting)
    await handle.execute_update(PostmortemWorkflow.submit_draft, draft(*ITEMS))
    await app.wait_stage(handle, Stage.in_review)
    await approve_all(handle)
    state = await app.wait_for(handle, lambda s: len(s.items) == 3 and all(i.ticket_key for i in s.items), timeout=60)
    items = {i.title: i for i in state.items}
    fix, rewrite, alert = (items[spec.title] for spec in ITEMS)
    handles = {i.id: app.client.get_workflow_handle(i.id) for i in state.items}

    # opened once each, with the right fields
    tickets = tracker.tickets()
    assert sorted(tickets) == sorted(i.ticket_key for i in state.items)
    for spec in ITEMS:
        item = items[spec.title]
        ticket = tickets[item.ticket_key]
        jira_id, gh_login = HANDLES[spec.owner]
        assert tracker.assignee(ticket) == (jira_id if tracker.name == "jira" else [gh_login])
        assert f"closeloop:{item.id}" in tracker.body(ticket)
        assert inc.title in tracker.body(ticket)
        assert (ticket.get("summary") or ticket.get("title")) == spec.title
        if tracker.name == "jira":
            assert ticket["duedate"] == item.due_at.date().isoformat()
    await eventually(lambda: len(app.store.records.tracked_items()) == 3)

    # closing a ticket on the tracker completes its item; won't do asks its owner why
    tracker.close(fix.ticket_key)
    tracker.wont_do(rewrite.ticket_key)
    first = await sweep(app, f"sync-{tracker.name}-1")
    assert signalled(first) == {"done": 1, "wont_do": 1} and first.failures == []
    st = await app.wait_for(handles[fix.id], lambda s: s.phase == "waiting_effectiveness")
    assert st.item.status == ItemStatus.done
    st = await app.wait_for(handles[rewrite.id], lambda s: s.phase == "awaiting_reason" and s.reason_due)
    await eventually(lambda: [who for kind, who, _key, _at in app.outbox(inc.workflow_id)
                              if kind == "wont_do_reason_request"] == ["erin"])
    await handles[rewrite.id].execute_update(ActionItemWorkflow.explain_wont_do,
                                             WontDoReason(by="erin", reason="the cache goes away with the v2 API"))
    st = await app.wait_for(handles[rewrite.id], lambda s: s.phase == "closed")
    assert st.item.verdict_note.startswith("the cache goes away with the v2 API (closed as ")

    # reopening the ticket revokes the completion
    await eventually(lambda: [i.id for i in app.store.records.action_items(status="done")] == [fix.id])
    tracker.reopen(fix.ticket_key)
    second = await sweep(app, f"sync-{tracker.name}-2")
    assert signalled(second) == {"reopened": 1}
    st = await app.wait_for(handles[fix.id], lambda s: s.phase == "tracking" and s.cycle == 1)
    assert st.item.status == ItemStatus.open and st.item.completed_at is None

    # completing an item in closeloop closes its ticket on the tracker
    await handles[alert.id].execute_update(ActionItemWorkflow.complete, CompleteItem(by="alice"))
    await app.wait_for(handles[alert.id], lambda s: s.phase == "waiting_effectiveness")
    await eventually(lambda: tracker.closed(tracker.tickets()[alert.ticket_key]))
    await eventually(lambda: len(app.store.records.action_items(status="done")) == 1)
    third = await sweep(app, f"sync-{tracker.name}-3")
    assert signalled(third) == {}  # the tracker and closeloop agree

    assert len(tracker.tickets()) == 3  # one ticket per item, all along
