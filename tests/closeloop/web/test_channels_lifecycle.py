"""One whole lifecycle where people are reached where they work, on the time-skipping server (demo time), against
real servers the test starts: Radicale (CalDAV) holds alice's calendar, aiosmtpd takes the mail, and the Slack
stand-in (every answer validated against Slack's Web API description) takes the DMs and the button presses.

- alice's invite appears in her Radicale calendar, at a slot that avoids her busy mornings (a recurring event);
- the draft request arrives by email (`[notify] kinds`), the reminders as Slack DMs (`[notify] channels`);
- bob requests changes with a Slack button, signed as Slack signs, then approves; erin approves too;
- erin marks her action item done from Slack;
- the published postmortem is announced in the incidents channel (`[notify] announce`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio.testing import WorkflowEnvironment

from closeloop.ids import event_uid, meeting_key
from closeloop.models import ActionItemSpec, Stage
from closeloop.secrets import Secrets
from closeloop.standins.slack import SlackStandin
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.closeloop.web.conftest import make_web
from tests.closeloop.web.test_slack_interactions import HANDLES, SIGNING_SECRET, TOKEN, SlackEnv
from tests.integrations.test_caldav_calendar import PASSWORD, Server, server  # noqa: F401 - the fixture
from tests.standins.fixtures import SLACK_SPEC, validated
from tests.standins.smtp import SmtpServer
from tests.temporal_env import DAY, eventually, incident, running_app
from tests.workflows.drive import draft

BERLIN = ZoneInfo("Europe/Berlin")  # alice's time zone (closeloop/examples/team.toml)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    with SmtpServer(tmp_path, security="none", auth=False) as mail:
        yield mail


async def test_a_lifecycle_reaches_people_in_their_calendar_mail_and_slack(
        time_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Server,  # noqa: F811
        smtp: SmtpServer) -> None:
    for key in ("alice", "bob", "erin"):
        assert server.client.mkcol(f"{server.base}{key}/", "").status in (200, 201)
        assert server.client.mkcalendar(f"{server.base}{key}/calendar/").status == 201
    # alice is busy every morning until 13:00 in Berlin, from a week ago on (a recurring event)
    start = (datetime.now(BERLIN) - timedelta(days=7)).date()
    server.put("alice/calendar/", "mornings@test",
               f"DTSTART;TZID=Europe/Berlin:{start:%Y%m%d}T080000\nDTEND;TZID=Europe/Berlin:{start:%Y%m%d}T130000\n"
               "RRULE:FREQ=DAILY\nSUMMARY:Focus time")

    with validated(SlackStandin, SLACK_SPEC, token=TOKEN) as slack:
        for key, user in HANDLES.items():
            slack.add_user(user, f"{key}@example.com")
        slack.add_channel("C0INCIDENTS")
        handles = "".join(f'\n[people.{key}.handles]\nslack = "{user}"\n' for key, user in HANDLES.items())
        extra = (f'\n[notifiers.slack]\nbase_url = "{slack.base_url}"\n'
                 f'\n[notifiers.email]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\n'
                 f'from_address = "closeloop@example.com"\n'
                 f'\n[calendars.caldav]\nurl = "{server.base}"\nusername = "closeloop"\norganizer = "alice"\n'
                 f'calendars = {{ alice = "alice/calendar/", bob = "bob/calendar/", erin = "erin/calendar/" }}\n'
                 + handles)
        notify = ('channels = ["slack"]\nkinds = { draft_requested = ["email"] }\n'
                  'announce = { published = ["slack:C0INCIDENTS"] }\ndefer_to_working_hours = false')
        monkeypatch.setenv("CLOSELOOP_SLACK_TOKEN", TOKEN)  # the worker's channels read the environment
        monkeypatch.setenv("CLOSELOOP_CALDAV_PASSWORD", PASSWORD)
        secrets = Secrets({"CLOSELOOP_SLACK_SIGNING_SECRET": SIGNING_SECRET, "CLOSELOOP_SLACK_TOKEN": TOKEN})
        async with running_app(time_env, tmp_path, extra=extra, notify=notify) as app, \
                make_web(app, secrets) as http:
            env = SlackEnv(app, http, slack)
            inc = incident()
            handle = await app.resolve(inc)
            state = await app.wait_stage(handle, Stage.drafting)

            # The invite: one event in alice's own calendar on Radicale, at a slot clear of her mornings.
            assert state.meeting is not None and state.meeting.unavailable == []
            assert state.meeting.calendar_ref.startswith(f"{server.base}alice/calendar/")  # the event's URL
            event = server.read(state.meeting.calendar_ref)
            assert str(event["UID"]) == event_uid(meeting_key(inc.workflow_id))
            begins = event.decoded("DTSTART").astimezone(BERLIN)
            assert begins.time() >= time(13, 0), begins  # after her focus time, on a working day
            assert begins == state.meeting.start.astimezone(BERLIN)
            attendees = sorted(str(a).removeprefix("mailto:") for a in event.get("ATTENDEE"))
            assert attendees == ["alice@example.com", "bob@example.com", "erin@example.com"]

            # The draft request by email; the first reminder a day later as a Slack DM.
            await eventually(lambda: any(m["X-Closeloop-Kind"] == "draft_requested" for m in smtp.messages))
            [request] = [m for m in smtp.messages if m["X-Closeloop-Kind"] == "draft_requested"]
            assert request["To"].addresses[0].addr_spec == "alice@example.com"
            await app.env.sleep(DAY + timedelta(minutes=5))
            await app.wait_for(handle, lambda s: s.draft_chase is not None and s.draft_chase.reminders_sent >= 1)
            reminders = [m for m in slack.messages(slack.dms["U0ALICE"])
                         if m["metadata"]["event_payload"]["kind"] == "reminder"]
            assert reminders and all(m["X-Closeloop-Kind"] != "reminder" for m in smtp.messages)

            # bob asks for changes from Slack; the next round he and erin approve from Slack.
            spec = ActionItemSpec(title="Add a canary stage", owner="erin", priority="P2")
            await handle.execute_update(PostmortemWorkflow.submit_draft, draft(spec))
            await app.wait_stage(handle, Stage.in_review)
            changes = await env.button("U0BOB", "request_changes")
            assert (await env.press(changes, "U0BOB")).status_code == 200
            await app.wait_stage(handle, Stage.drafting)
            await handle.execute_update(PostmortemWorkflow.submit_draft, draft(spec))
            await app.wait_for(handle, lambda s: s.stage == Stage.in_review and s.review_round == 2)
            for user in ("U0BOB", "U0ERIN"):
                approve = await env.button(user, "approve", not_in=(changes.ts,))
                assert (await env.press(approve, user)).status_code == 200
            state = await app.wait_for(handle, lambda s: s.stage == Stage.following_up and s.items
                                       and s.items[0].ticket_key)
            assert [(v.reviewer, v.decision.value, v.round) for v in state.reviews] == [
                ("bob", "request_changes", 1), ("bob", "approve", 2), ("erin", "approve", 2)]

            # erin marks her item done from its Slack message.
            item = app.client.get_workflow_handle(state.items[0].id)
            await app.wait_for(item, lambda s: s.phase == "tracking")
            done = await env.button("U0ERIN", "item_done")
            assert (await env.press(done, "U0ERIN")).status_code == 200
            await app.wait_for(item, lambda s: s.item.status.value == "done")

            # Published: announced once in the incidents channel.
            await eventually(lambda: bool(slack.messages("C0INCIDENTS")))
            [announcement] = slack.messages("C0INCIDENTS")
            assert announcement["text"].startswith(f"Postmortem published: {inc.title}")
            assert announcement["metadata"]["event_payload"]["postmortem_id"] == inc.workflow_id
            assert slack.ephemerals() == []  # no press was refused
