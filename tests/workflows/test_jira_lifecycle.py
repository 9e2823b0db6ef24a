"""A lifecycle whose action items are Jira issues: the real worker and activities, the real `jira` client
over HTTP, and the Jira Cloud stand-in (every response validated against the v3 spec). First slice of the
Jira/GitHub issue: tickets opened once with the right fields, reminders and escalations as comments,
and a Jira outage that delays the ticket and fails nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from closeloop.models import ActionItemSpec, Stage
from closeloop.standins.jira import JiraStandin
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.standins.fixtures import JIRA_SPEC, validated
from tests.temporal_env import DAY, App, incident, running_app
from tests.workflows.drive import approve_all, draft, to_following_up


@pytest.fixture
def jira() -> Iterator[JiraStandin]:
    with validated(JiraStandin, JIRA_SPEC, project="CL", users={"acc-bob": "Bob Reviewer"}) as server:
        yield server


@pytest_asyncio.fixture
async def jira_app(time_env: WorkflowEnvironment, tmp_path: Path, jira: JiraStandin) -> AsyncIterator[App]:
    extra = f"""
[services.checkout.policy]
tracker = "jira"

[people.bob.handles]
jira = "acc-bob"

[trackers.jira]
url = "{jira.url}"
project = "CL"
timeout = 2.0
"""
    async with running_app(time_env, tmp_path, extra=extra) as app:
        yield app


async def test_action_items_become_jira_issues_once_with_reminders_as_comments(jira_app: App,
                                                                               jira: JiraStandin) -> None:
    app = jira_app
    inc = incident()
    jira.fail_next(2, status=503)  # Jira is down when the ticket is first tried: delayed, not failed
    handle = await app.resolve(inc)
    await app.wait_stage(handle, Stage.drafting)
    await handle.execute_update(PostmortemWorkflow.submit_draft, draft(
        ActionItemSpec(title="Validate config before push", owner="bob", priority="P1", kind="prevent")))
    await app.wait_stage(handle, Stage.in_review)
    await approve_all(handle)
    state = await app.wait_for(handle, lambda s: s.items and s.items[0].ticket_key, timeout=60)
    item = state.items[0]
    assert item.tracker == "jira" and item.ticket_key == "CL-1"
    assert len(jira.issues) == 1
    issue = jira.issues["CL-1"]
    assert issue["assignee"] == "acc-bob" and issue["priority"] == "Highest"
    assert issue["summary"] == "Validate config before push"
    assert issue["duedate"] == item.due_at.date().isoformat()
    assert f"closeloop-marker: closeloop:{item.id}" in issue["description"]
    assert inc.title in issue["description"]

    # the item goes overdue: the reminder and the escalation land on the issue as comments, once each
    await app.env.sleep(7 * DAY + timedelta(hours=1))
    await app.wait_for(app.client.get_workflow_handle(item.id), lambda s: s.chase.escalations_sent >= 1)
    bodies = [c["body"] for c in jira.issues["CL-1"]["comments"]]
    assert sum("Action item assigned" in b for b in bodies) == 1
    assert sum(b.startswith("Escalation") or "escalat" in b.split("\n")[0].lower() for b in bodies) == 1
    assert len(jira.issues) == 1


# --------------------------------------------------------------------------- per-service settings, lost response

PER_SERVICE = """
[services.checkout.policy]
tracker = "jira"

[people.bob.handles]
jira = "acc-bob"

[trackers.jira]
url = "{url}"
project = "CL"
timeout = 2.0
custom_fields = {{ customfield_10020 = "sre" }}

[trackers.jira.services.checkout]
project = "PAY"
issue_type = "Bug"
components = ["checkout-api"]
priorities = {{ P1 = "High", P2 = "Medium", P3 = "Low", P4 = "Lowest" }}
custom_fields = {{ customfield_10010 = "{{incident}} {{severity}}", customfield_10020 = {{ value = "payments" }} }}
"""


@pytest.fixture
def pay_jira() -> Iterator[JiraStandin]:
    with validated(JiraStandin, JIRA_SPEC, project="CL", projects={"PAY": "Payments"},
                   components={"PAY": ["checkout-api"]},
                   custom_fields={"customfield_10010": "Incident", "customfield_10020": "Team"},
                   users={"acc-bob": "Bob Reviewer"}) as server:
        yield server


@pytest_asyncio.fixture
async def pay_app(time_env: WorkflowEnvironment, tmp_path: Path, pay_jira: JiraStandin) -> AsyncIterator[App]:
    async with running_app(time_env, tmp_path, extra=PER_SERVICE.format(url=pay_jira.url)) as app:
        yield app


async def test_service_settings_reach_the_issue_and_a_lost_response_opens_no_second(pay_app: App,
                                                                                     pay_jira: JiraStandin) -> None:
    """The checkout service's project, issue type, components, priorities and custom fields (templated) and
    bob's accountId reach the issue through config -> registry -> open_ticket; the create's answer is lost
    and the activity's retry finds the issue by its marker: one issue."""
    pay_jira.lose_next_create_response()
    inc = incident()
    _, state = await to_following_up(pay_app, inc, ActionItemSpec(title="Validate config before push", owner="bob",
                                                                  priority="P1"))
    item = state.items[0]
    assert item.ticket_key == "PAY-1" and item.ticket_url == f"{pay_jira.url}/browse/PAY-1"
    assert list(pay_jira.issues) == ["PAY-1"]  # exactly one issue, though the first answer never came
    assert pay_jira.requests["POST /rest/api/2/issue"] == 1
    issue = pay_jira.issues["PAY-1"]
    assert issue["project"] == "PAY" and issue["issuetype"] == "Bug" and issue["priority"] == "High"
    assert issue["components"] == ["checkout-api"]
    assert issue["custom"] == {"customfield_10010": f"{inc.key} SEV2", "customfield_10020": {"value": "payments"}}
    assert issue["assignee"] == "acc-bob"
    document = pay_app.store.records.get_postmortem(item.postmortem_id).document_ref  # type: ignore[union-attr]
    assert document and f"Postmortem: {document}" in issue["description"]
    assert f"Incident: {inc.title} [{inc.key}]" in issue["description"]
