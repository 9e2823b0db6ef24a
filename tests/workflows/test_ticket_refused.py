"""A tracker that refuses a ticket (a 400: wrong project, unknown assignee) must not lose the action item:
the postmortem owner is told once, the ticket is tried again every reminder interval, and opens once the
cause is gone. Through the real `jira` client and the Jira stand-in."""

from __future__ import annotations

import os
from datetime import timedelta

from closeloop.models import ActionItemSpec, Stage
from closeloop.standins.jira import JiraStandin
from closeloop.workflows.action_item import ActionItemWorkflow
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.temporal_env import DAY, App, eventually, incident, record_histories
from tests.workflows.drive import approve_all, draft
from tests.workflows.test_jira_lifecycle import jira, jira_app  # noqa: F401 - fixtures


async def test_a_refused_ticket_is_reported_once_and_tried_again_until_it_opens(jira_app: App,  # noqa: F811
                                                                               jira: JiraStandin) -> None:  # noqa: F811
    app = jira_app
    inc = incident()
    jira.fail_next(3, status=400, path="/rest/api/2/issue")  # refused three times: no retry fixes a 400
    handle = await app.resolve(inc)
    await app.wait_stage(handle, Stage.drafting)
    await handle.execute_update(PostmortemWorkflow.submit_draft, draft(
        ActionItemSpec(title="Validate config before push", owner="bob", priority="P1", kind="prevent")))
    await app.wait_stage(handle, Stage.in_review)
    await approve_all(handle)
    state = await app.wait_for(handle, lambda s: len(s.items) == 1)
    h = app.client.get_workflow_handle(state.items[0].id)
    st = await app.wait_for(h, lambda s: s.ticket_failures == 1)
    assert st.phase == "opening" and not jira.issues
    await eventually(lambda: [(k, who) for k, who, _key, _at in app.outbox(inc.workflow_id) if k == "ticket_refused"]
                     == [("ticket_refused", "alice")])

    await app.env.sleep(3 * DAY + timedelta(hours=1))  # tried again each day: refused twice more, then opens
    st = await app.wait_for(h, lambda s: s.phase == "tracking" and s.item.ticket_key, timeout=60)
    assert st.ticket_failures == 3 and list(jira.issues) == [st.item.ticket_key]
    assert jira.requests["POST /rest/api/2/issue"] == 4
    # told once, not at every refusal
    assert [k for k, *_ in app.outbox(inc.workflow_id)].count("ticket_refused") == 1
    assert (await h.query(ActionItemWorkflow.state)).item.status.value == "open"
    if os.environ.get("CLOSELOOP_RECORD_HISTORIES") == "1":  # this fixture does not record by itself
        await record_histories(app, "test_a_refused_ticket_is_reported_once_and_tried_again_until_it_opens")
