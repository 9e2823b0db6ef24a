"""The ticket reconciliation sweep (TicketSyncWorkflow -> activities/reconcile.py): running action items
with tickets on the Jira and GitHub stand-ins (real `jira` and PyGithub clients over HTTP, every response
validated against the vendors' specs), tickets changed behind closeloop's back the way people change them,
and sweeps that tell each item once, leave the rest alone, and survive one tracker failing.

The items are ActionItemWorkflows started directly (the lifecycle that starts them is covered by
test_jira_lifecycle.py and test_tracker_lifecycles.py); both trackers are built from the config's
`[trackers.jira]` and `[trackers.github]` sections, as a user configures them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from closeloop.models import ActionItem, ActionItemInput, CompleteItem, Incident, ItemStatus, SyncSummary
from closeloop.planning import policy_for
from closeloop.standins.github import GitHubStandin
from closeloop.standins.jira import JiraStandin
from closeloop.workflows.action_item import ActionItemWorkflow
from closeloop.workflows.sweeps import SweepInput, TicketSyncWorkflow
from tests.closeloop.cli.test_cli_lifecycle import Cli
from tests.standins.fixtures import GITHUB_SPEC, JIRA_SPEC, validated
from tests.temporal_env import DAY, App, eventually, incident, make_config, running_app

REPO = "acme/checkout"


@pytest.fixture
def jira() -> Iterator[JiraStandin]:
    with validated(JiraStandin, JIRA_SPEC, must_serve=True, project="CL", users={"acc-bob": "Bob Reviewer"}) as server:
        yield server


@pytest.fixture
def github() -> Iterator[GitHubStandin]:
    with validated(GitHubStandin, GITHUB_SPEC, must_serve=True) as server:
        server.add_repo(REPO, collaborators=["bob-gh"])
        yield server


@pytest_asyncio.fixture
async def sync_app(time_env: WorkflowEnvironment, tmp_path: Path, jira: JiraStandin,
                   github: GitHubStandin) -> AsyncIterator[App]:
    extra = f"""
[people.bob.handles]
jira = "acc-bob"
github = "bob-gh"

[trackers.jira]
url = "{jira.url}"
project = "CL"
timeout = 2.0

[trackers.github]
base_url = "{github.base_url}"
repo = "{REPO}"
timeout = 2.0
"""
    async with running_app(time_env, tmp_path, extra=extra) as app:
        yield app


@dataclass
class Item:
    item: ActionItem
    handle: WorkflowHandle[Any, Any]

    @property
    def key(self) -> str:
        assert self.item.ticket_key
        return self.item.ticket_key

    async def state(self) -> Any:
        return await self.handle.query(ActionItemWorkflow.state)


async def start_items(app: App, inc: Incident, trackers: list[str]) -> list[Item]:
    """One running ActionItemWorkflow per tracker name, each with its ticket open."""
    pid = inc.workflow_id
    app.store.records.upsert_postmortem(pid, inc, owner="alice", stage="following_up", stalled=False, stage_due_at=None)
    policy = policy_for(app.config, inc.severity, inc.services[0])
    now = await app.now()
    items = []
    for n, tracker in enumerate(trackers, start=1):
        item = ActionItem(id=f"{pid}/item-{n}", postmortem_id=pid, title=f"item {n} on {tracker}", owner="bob",
                          priority="P2", due_at=now + 14 * DAY, tracker=tracker)
        handle = await app.client.start_workflow(
            ActionItemWorkflow.run, ActionItemInput(item=item, policy=policy, incident=inc, postmortem_owner="alice"),
            id=item.id, task_queue=app.task_queue)
        app.handles.append(handle)
        items.append(Item(item, handle))
    for it in items:
        state = await app.wait_for(it.handle, lambda s: s.phase == "tracking" and s.item.ticket_key)
        it.item = state.item
    await eventually(lambda: len(app.store.records.tracked_items()) == len(items))
    return items


async def sweep(app: App, name: str) -> SyncSummary:
    """Start a sweep and wait for it by polling (waiting on a result would let the test server skip time)."""
    handle = await app.client.start_workflow(TicketSyncWorkflow.run, SweepInput(), id=name, task_queue=app.task_queue)
    for _ in range(600):
        desc = await handle.describe()
        if desc.status and desc.status.name != "RUNNING":
            break
        await asyncio.sleep(0.05)
    # the result from the history: `result()` on the time-skipping client would let the server skip time
    history = await handle.fetch_history()
    completed = history.events[-1].workflow_execution_completed_event_attributes
    [summary] = await app.client.data_converter.decode(completed.result.payloads, [SyncSummary])
    return summary  # type: ignore[no-any-return]


def signalled(summary: SyncSummary) -> dict[str, int]:
    return {kind: n for kind, n in summary.signalled.items() if n}


async def test_sweep_signals_each_change_once_and_leaves_the_rest_alone(sync_app: App, jira: JiraStandin,
                                                                        github: GitHubStandin) -> None:
    app = sync_app
    names = ["j_done", "j_wont", "j_same", "j_deleted", "j_moved", "j_reopen", "j_completed_here",
             "g_done", "g_wont", "g_same", "g_deleted"]
    trackers = [{"j": "jira", "g": "github"}[name[0]] for name in names]
    items = dict(zip(names, await start_items(app, incident(), trackers), strict=True))
    assert items["j_done"].key.startswith("CL-") and items["g_done"].key.startswith(f"{REPO}#")
    gh = {name: int(it.key.split("#")[1]) for name, it in items.items() if name.startswith("g_")}

    # behind closeloop's back, on the trackers (and bob completes one item in closeloop; its ticket stays open)
    jira.set_status(items["j_done"].key, "Done", "Done")
    jira.set_status(items["j_wont"].key, "Done", "Won't Do")
    jira.delete(items["j_deleted"].key)
    moved_to = jira.move(items["j_moved"].key, "OPS")
    jira.set_status(items["j_reopen"].key, "Done", "Done")
    github.set_state(REPO, gh["g_done"], "closed", "completed")
    github.set_state(REPO, gh["g_wont"], "closed", "not_planned")
    github.delete_issue(REPO, gh["g_deleted"])
    # completed in closeloop, and Jira refuses to close its ticket (the item stays done, the ticket open)
    jira.fail_next(1, status=400, path="/rest/api/2/issue/{key}/transitions")
    await items["j_completed_here"].handle.execute_update(ActionItemWorkflow.complete, CompleteItem(by="bob"))
    await eventually(lambda: app.store.records.action_items(status="done") != [])
    await app.wait_for(items["j_completed_here"].handle, lambda s: s.phase == "waiting_effectiveness")
    await close_attempt_failed(items["j_completed_here"].handle)

    first = await sweep(app, "sync-1")
    assert first.failures == [] and first.items_checked == len(items)
    assert signalled(first) == {"done": 3, "wont_do": 2, "deleted": 2, "moved": 1}
    assert first.signals == 8 and first.unchanged == 3 and first.completed_in_closeloop == 1
    # Jira: one search, then (the answer carried OPS-1, unasked) one GET per missing key; GitHub: one listing
    assert {t.tracker: t.calls for t in first.trackers} == {"jira": 3, "github": 1} and first.calls == 4
    assert {t.tracker: t.items for t in first.trackers} == {"jira": 7, "github": 4}

    # each changed item heard exactly once; the others not at all
    changed = {"j_done", "j_wont", "j_deleted", "j_moved", "j_reopen", "g_done", "g_wont", "g_deleted"}
    for name, it in items.items():
        assert (await it.state()).sync_events == (1 if name in changed else 0), name
    for name in ("j_done", "j_reopen", "g_done"):
        await app.wait_for(items[name].handle, lambda s: s.item.status == ItemStatus.done)
    j_wont = await app.wait_for(items["j_wont"].handle, lambda s: s.item.status == ItemStatus.wont_do)
    g_wont = await app.wait_for(items["g_wont"].handle, lambda s: s.item.status == ItemStatus.wont_do)
    assert (j_wont.item.verdict_note, g_wont.item.verdict_note) == ("Won't Do", "not_planned")
    # what the moved and deleted items were told, and what they did: follow the move, open a new ticket
    events = {name: await signal_inputs(items[name].handle) for name in ("j_moved", "j_deleted", "g_deleted")}
    assert [(e["status"], e["moved_to"], e["source"]) for e in events["j_moved"]] == [("open", moved_to, "sweep")]
    assert events["j_moved"][0]["ticket_key"] == items["j_moved"].key
    assert [e["status"] for e in events["j_deleted"] + events["g_deleted"]] == ["deleted", "deleted"]
    await app.wait_for(items["j_moved"].handle, lambda s: s.item.ticket_key == moved_to)
    for name in ("j_deleted", "g_deleted"):
        st = await app.wait_for(items[name].handle, lambda s: s.tickets_replaced == 1 and s.ticket_change is None)
        assert st.item.ticket_key != items[name].key and st.phase == "tracking"

    # right after (once the items have saved what they heard): nothing to tell
    await eventually(lambda: len([i for i in app.store.records.action_items() if i.status != ItemStatus.open]) == 6)
    await eventually(lambda: app.store.records.action_item_by_ticket("jira", moved_to) is not None)
    second = await sweep(app, "sync-2")
    assert second.signals == 0 and signalled(second) == {}, second
    assert second.already_signalled == 0  # the moved item follows its new key, the deleted ones have new tickets
    for name, it in items.items():
        assert (await it.state()).sync_events == (1 if name in changed else 0), name

    # j_reopen's ticket is reopened: the next sweep revokes its completion; the item completed in closeloop
    # (ticket never closed) is still left alone
    jira.set_status(items["j_reopen"].key, "To Do")
    third = await sweep(app, "sync-3")
    assert signalled(third) == {"reopened": 1} and third.signals == 1 and third.completed_in_closeloop == 1
    reopened = await app.wait_for(items["j_reopen"].handle, lambda s: s.item.status == ItemStatus.open)
    assert reopened.phase == "tracking" and reopened.sync_events == 2 and reopened.cycle == 1
    assert (await items["j_completed_here"].state()).item.status == ItemStatus.done


async def close_attempt_failed(handle: WorkflowHandle[Any, Any]) -> None:
    """Until the workflow's `close_ticket` activity has failed (non-retryable) and the workflow went on."""
    for _ in range(300):
        scheduled, failed = set(), False
        async for event in handle.fetch_history_events():
            if event.HasField("activity_task_scheduled_event_attributes"):
                if event.activity_task_scheduled_event_attributes.activity_type.name == "close_ticket":
                    scheduled.add(event.event_id)
            if event.HasField("activity_task_failed_event_attributes"):
                failed |= event.activity_task_failed_event_attributes.scheduled_event_id in scheduled
            if failed and event.HasField("workflow_task_completed_event_attributes"):
                return
        await asyncio.sleep(0.05)
    raise AssertionError("close_ticket did not fail")


async def signal_inputs(handle: WorkflowHandle[Any, Any]) -> list[dict[str, Any]]:
    """The `ticket_status` signals in a workflow's history, as sent."""
    import json

    out = []
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_execution_signaled_event_attributes"):
            attrs = event.workflow_execution_signaled_event_attributes
            if attrs.signal_name == "ticket_status":
                out.append(json.loads(attrs.input.payloads[0].data))
    return out


async def test_a_failing_tracker_fails_only_its_part(sync_app: App, jira: JiraStandin, github: GitHubStandin,
                                                     tmp_path: Path) -> None:
    app = sync_app
    j, g, gone = await start_items(app, incident(), ["jira", "github", "jira"])
    # an item whose workflow no longer runs (terminated once it is idle): cancelled, its ticket told, not an error
    await eventually(lambda: bool(jira.issues[gone.key]["comments"]))  # its "opened" notification landed
    await asyncio.sleep(0.2)
    await gone.handle.terminate("test: the lifecycle was ended by hand")
    jira.set_status(gone.key, "Done", "Done")
    jira.set_status(j.key, "Done", "Done")
    github.set_state(REPO, int(g.key.split("#")[1]), "closed", "completed")
    jira.fail_next(1, status=500, path="/rest/api/2/search/jql")

    # through the CLI: the summary still comes out, with the failure, and the exit code says so
    cli = Cli(app, str(tmp_path))
    run = await cli("tickets", "sync", "--json", ok=False)
    assert run.code == 1 and "1 tracker(s) failed: jira:" in run.err and "500" in run.err
    summary = SyncSummary.model_validate(run.json())
    assert signalled(summary) == {"done": 1} and summary.items_checked == 2 and summary.workflows_gone == 0
    assert summary.cancelled == 1 and app.store.records.action_items(status="cancelled")[0].id == gone.item.id
    failed = {t.tracker: t.error for t in summary.trackers}
    assert "HTTP 500" in failed["jira"] and failed["github"] == ""
    assert (await j.state()).sync_events == 0
    await app.wait_for(g.handle, lambda s: s.item.status == ItemStatus.done and s.sync_events == 1)

    # Jira is back: the next sweep catches up
    run = await cli("tickets", "sync")
    assert run.code == 0 and "signalled 1 done" in run.out and "cancelled" not in run.out, run
    await app.wait_for(j.handle, lambda s: s.item.status == ItemStatus.done and s.sync_events == 1)


def test_the_sync_schedule_runs_every_configured_interval_and_skips_overlaps(tmp_path: Path) -> None:
    from datetime import timedelta

    from temporalio.client import ScheduleOverlapPolicy

    from closeloop.config import ConfigError
    from closeloop.sweep_schedules import _schedule, sweeps

    assert make_config(tmp_path).sync.every == timedelta(minutes=5)  # the default
    config = make_config(tmp_path, extra='\n[sync]\nevery = "2m"\n')
    by_id = {s.schedule_id: s for s in sweeps(config.sync.every)}
    assert set(by_id) == {"closeloop-stalled-digest", "closeloop-ticket-sync", "closeloop-retention",
                          "closeloop-effectiveness-review"}
    schedule = _schedule("q", by_id["closeloop-ticket-sync"])
    assert [i.every for i in schedule.spec.intervals] == [timedelta(minutes=2)] and not schedule.spec.cron_expressions
    assert schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert schedule.action.workflow == "TicketSyncWorkflow" and schedule.action.task_queue == "q"  # type: ignore[attr-defined]
    digest = _schedule("q", by_id["closeloop-stalled-digest"])
    assert digest.spec.cron_expressions == ["0 8 * * 1-5"] and digest.action.workflow == "StalledDigestWorkflow"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="sync.every"):
        make_config(tmp_path, extra='\n[sync]\nevery = "10s"\n')
