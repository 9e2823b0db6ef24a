"""Notifications wait for the recipient's working hours ([notify] working_hours, in their own time zone): a
workflow timer defers them, never drops them, unless what they ask for is done meanwhile. Kinds in
`any_hour` (the invite) go out at once. The working hours here are one minute a day, 00:00-00:01 in alice's
Europe/Berlin, so whatever time the test server starts at, every other notification is deferred; the
expected times come from the same rule (`next_working_time`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from closeloop.meeting_slots import next_working_time
from closeloop.models import Stage
from closeloop.policy import WorkingHours
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.temporal_env import DAY, App, incident, running_app, within
from tests.workflows.drive import draft

HOURS = WorkingHours(start="00:00", end="00:01", days=[0, 1, 2, 3, 4, 5, 6])  # type: ignore[arg-type]
NOTIFY = ('working_hours = { start = "00:00", end = "00:01", days = [0, 1, 2, 3, 4, 5, 6] }')
BERLIN = "Europe/Berlin"


@pytest_asyncio.fixture
async def app(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[App]:
    async with running_app(time_env, tmp_path, notify=NOTIFY) as the_app:
        yield the_app


async def test_a_reminder_waits_for_working_hours_and_is_dropped_once_the_draft_is_in(app: App) -> None:
    inc = incident()
    handle = await app.resolve(inc)
    state = await app.wait_stage(handle, Stage.drafting)
    t0 = state.draft_chase.started_at
    invites = [at for kind, _who, _key, at in app.outbox(inc.workflow_id) if kind == "invite"]
    assert invites and all(at <= t0 for at in invites)  # `invite` is in any_hour: sent at once
    assert [k for k, *_ in app.outbox(inc.workflow_id) if k == "draft_requested"] == []  # waiting

    requested_at = next_working_time(t0, BERLIN, HOURS)
    reminder_due = t0 + DAY  # reminder_every = 1d
    reminder_at = next_working_time(reminder_due, BERLIN, HOURS)
    assert reminder_at > reminder_due  # one minute a day: the reminder has to wait
    # Sleep to halfway between the reminder's due time and the working hour it waits for.
    await app.env.sleep(reminder_due + (reminder_at - reminder_due) / 2 - t0)
    state = await app.wait_for(handle, lambda s: s.draft_chase.reminders_sent >= 0)
    sent = [(k, who, at) for k, who, _key, at in app.outbox(inc.workflow_id) if k in ("draft_requested", "reminder")]
    assert len(sent) == 1 and sent[0][:2] == ("draft_requested", "alice")
    assert within(sent[0][2], requested_at, 60)  # deferred to alice's next working minute, then sent
    assert sent[0][2].astimezone(ZoneInfo(BERLIN)).strftime("%H:%M") == "00:00"

    # The draft arrives while the reminder waits: the reminder is not sent (it asks for what is done).
    await handle.execute_update(PostmortemWorkflow.submit_draft, draft())
    await app.wait_stage(handle, Stage.in_review)
    await app.env.sleep(reminder_at - (reminder_due + (reminder_at - reminder_due) / 2) + timedelta(hours=1))
    await app.wait_stage(handle, Stage.in_review)
    kinds = [k for k, *_ in app.outbox(inc.workflow_id)]
    assert "reminder" not in kinds
    # The review requests go out in their recipients' own working minute (bob's and erin's time zones).
    await app.env.sleep(DAY)
    requests = [(who, at) for k, who, _key, at in app.outbox(inc.workflow_id) if k == "review_request"]
    zones = {p.key: p.timezone for p in app.config.people_directory().values()}
    assert sorted(who for who, _ in requests) == ["bob", "erin"]
    for who, at in requests:
        local = at.astimezone(ZoneInfo(zones[who]))
        assert local.strftime("%H:%M") == "00:00", (who, local)
