"""POST /webhooks/slack/interactions: the buttons of closeloop's Slack messages, pressed. The worker sends its
notifications as DMs to the Slack stand-in (every answer validated against Slack's Web API description); a
test presses a button the way Slack reports it (Slack's documented block_actions example,
tests/payloads/slack/block_actions.json, with the pressed message and button put in, and signed as Slack signs),
and the action runs as the person the Slack user maps to, through the same Update as the CLI. Whatever is
refused changes nothing: the workflow's history has no more events than before."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from closeloop.client import Closeloop
from closeloop.integrations.base import ActionRefused
from closeloop.integrations.slack.interactions import sign, signature_ok
from closeloop.models import (
    ActionItemSpec,
    CompleteItem,
    ReviewDecision,
    ReviewVote,
    SnoozeRequest,
    Stage,
    VerdictInput,
)
from closeloop.secrets import Secrets
from closeloop.standins.slack import SlackStandin
from closeloop.web import actions
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.closeloop.web.conftest import make_web
from tests.standins.fixtures import SLACK_SPEC, validated
from tests.temporal_env import App, incident, running_app
from tests.workflows.drive import draft

PAYLOADS = Path(__file__).resolve().parents[2] / "payloads"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the secret of Slack's worked example
TOKEN = "xoxb-closeloop-test"
URL = "/webhooks/slack/interactions"
# Slack users: alice, bob, carol and erin by their directory `slack` handle; dave by his email (users.info);
# U0STRANGER is a member of the workspace closeloop does not know.
HANDLES = {"alice": "U0ALICE", "bob": "U0BOB", "carol": "U0CAROL", "erin": "U0ERIN"}
DAVE, STRANGER = "U0DAVE", "U0STRANGER"


def documented_press() -> dict[str, Any]:
    """Slack's documented block_actions example, as Slack documents it."""
    data: dict[str, Any] = json.loads((PAYLOADS / "slack" / "block_actions.json").read_text())
    return data


@dataclass
class Button:
    """A button of a message in the stand-in: where it is, and what pressing it sends."""

    channel: str
    message: dict[str, Any]
    element: dict[str, Any]

    @property
    def ts(self) -> str:
        return str(self.message["ts"])


@dataclass
class SlackEnv:
    app: App
    http: httpx.AsyncClient
    slack: SlackStandin

    def payload(self, button: Button, user: str) -> dict[str, Any]:
        """Slack's documented example with this press put in. Changed from the example: `user.id`; the container
        (a message in the DM, not an attachment), `channel` and `message` (the stand-in's message, with its
        blocks); `response_url` (the stand-in's); and the action (the button pressed)."""
        payload = documented_press()
        payload["user"]["id"] = user
        payload["container"] = {"type": "message", "message_ts": button.ts, "channel_id": button.channel,
                                "is_ephemeral": False}
        payload["channel"] = {"id": button.channel, "name": "directmessage"}
        payload["message"] = {k: button.message[k] for k in ("bot_id", "type", "text", "user", "ts", "blocks")}
        payload["response_url"] = self.slack.response_url(button.channel, button.ts)
        payload["actions"] = [{"action_id": button.element["action_id"], "block_id": "=qXel",
                               "text": button.element["text"], "value": button.element.get("value", ""),
                               "type": "button", "action_ts": f"{time.time():.6f}"}]
        return payload

    async def send(self, payload: dict[str, Any] | None = None, *, body: bytes | None = None,
                   secret: str = SIGNING_SECRET, timestamp: int | None = None, signature: str | None = None,
                   content_type: str = "application/x-www-form-urlencoded") -> httpx.Response:
        raw = body if body is not None else urlencode({"payload": json.dumps(payload)}).encode()
        ts = str(int(time.time()) if timestamp is None else timestamp)
        headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
                   "X-Slack-Signature": signature if signature is not None else sign(raw, ts, secret)}
        return await self.http.post(URL, content=raw, headers=headers)

    async def press(self, button: Button, user: str) -> httpx.Response:
        return await self.send(self.payload(button, user))

    async def button(self, user: str, action: str, *, not_in: tuple[str, ...] = ()) -> Button:
        """The newest button `action` in the user's DM (on a message other than `not_in`), once it is there."""
        for _ in range(400):
            channel = self.slack.dms.get(user)
            for message in reversed(self.slack.messages(channel) if channel else []):
                if message["ts"] in not_in:
                    continue
                for block in message.get("blocks") or []:
                    for element in block.get("elements") or [] if block.get("type") == "actions" else []:
                        if element["action_id"].partition("#")[0] == action:
                            return Button(channel or "", message, element)
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {action} button reached {user}")

    def message(self, button: Button) -> dict[str, Any]:
        return next(m for m in self.slack.messages(button.channel) if m["ts"] == button.ts)


@asynccontextmanager
async def slack_env(time_env: WorkflowEnvironment, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SlackEnv]:
    with validated(SlackStandin, SLACK_SPEC, token=TOKEN) as slack:
        for key, user in HANDLES.items():
            slack.add_user(user, f"{key}@example.com")
        slack.add_user(DAVE, "Dave@Example.com")
        slack.add_user(STRANGER, "stranger@elsewhere.example")
        handles = "".join(f'\n[people.{key}.handles]\nslack = "{user}"\n' for key, user in HANDLES.items())
        extra = f'\n[notifiers.slack]\nbase_url = "{slack.base_url}"\n' + handles
        monkeypatch.setenv("CLOSELOOP_SLACK_TOKEN", TOKEN)  # the worker's channel reads the environment
        secrets = Secrets({"CLOSELOOP_SLACK_SIGNING_SECRET": SIGNING_SECRET, "CLOSELOOP_SLACK_TOKEN": TOKEN})
        async with running_app(time_env, tmp_path, extra=extra,
                               notify='channels = ["slack"]\ndefer_to_working_hours = false') as app, \
                make_web(app, secrets) as http:
            yield SlackEnv(app, http, slack)


async def settled_length(app: App, handle: WorkflowHandle[Any, Any]) -> int:
    """The workflow's history length once nothing is in flight (no activity, no workflow task) and it holds."""
    last = -1
    for _ in range(200):
        desc = await Closeloop(app.client, app.task_queue).describe_raw(handle.id)
        busy = bool(desc.pending_activities) or desc.HasField("pending_workflow_task")
        length = len((await handle.fetch_history()).events)
        if not busy and length == last:
            return length
        last = length
        await asyncio.sleep(0.1)
    raise AssertionError(f"{handle.id} never settled")


# What a rejected Update may leave in the history: on Temporal Server (1.21 and later) nothing, its workflow task
# is speculative and dropped; the time-skipping test server these tests run on keeps that workflow task's three
# events. Never an Update event, never anything else.
WORKFLOW_TASK_EVENTS = {EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
                        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED}


async def nothing_recorded_since(app: App, handle: WorkflowHandle[Any, Any], before: int) -> None:
    await settled_length(app, handle)
    added = [e.event_type for e in (await handle.fetch_history()).events[before:]]
    assert set(added) <= WORKFLOW_TASK_EVENTS, [EventType.Name(t) for t in added]


async def in_review(env: SlackEnv, *items: ActionItemSpec) -> WorkflowHandle[Any, Any]:
    handle = await env.app.resolve(incident())
    await env.app.wait_stage(handle, Stage.drafting)
    await handle.execute_update(PostmortemWorkflow.submit_draft, draft(*items))
    await env.app.wait_stage(handle, Stage.in_review)
    return handle


# --------------------------------------------------------------------------- the whole way


async def test_reviewers_and_owners_act_from_slack(time_env: WorkflowEnvironment, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async with slack_env(time_env, tmp_path, monkeypatch) as env:
        app, slack = env.app, env.slack
        spec = ActionItemSpec(title="Add a canary stage", owner="erin", priority="P2")
        handle = await in_review(env, spec)

        # bob asks for changes: back to drafting, his message says so instead of offering the buttons
        changes = await env.button("U0BOB", "request_changes")
        r = await env.press(changes, "U0BOB")
        assert r.status_code == 200 and r.content == b"", r.text
        state = await app.wait_stage(handle, Stage.drafting)
        [vote] = state.reviews
        assert (vote.reviewer, vote.decision.value, vote.round) == ("bob", "request_changes", 1)
        assert "from Slack" in vote.comment
        updated = env.message(changes)
        assert [b["type"] for b in updated["blocks"] if b["type"] == "actions"] == []
        line = updated["blocks"][-1]["elements"][0]["text"]
        assert line.startswith("✏️ Changes requested by Bob Reviewer at ") and line.endswith(" UTC"), line
        assert slack.requests["POST /chat.update"] == 1 and slack.ephemerals() == []

        # the next round: bob approves; pressing again changes nothing and says why
        await handle.execute_update(PostmortemWorkflow.submit_draft, draft(spec))
        await app.wait_for(handle, lambda s: s.stage == Stage.in_review and s.review_round == 2)
        approve = await env.button("U0BOB", "approve", not_in=(changes.ts,))
        assert (await env.press(approve, "U0BOB")).status_code == 200
        state = await app.wait_for(handle, lambda s: len(s.reviews) == 2)
        assert (state.reviews[-1].reviewer, state.reviews[-1].decision.value, state.reviews[-1].round) == \
            ("bob", "approve", 2)
        assert env.message(approve)["blocks"][-1]["elements"][0]["text"].startswith("✅ Approved by Bob Reviewer")

        before = await settled_length(app, handle)
        again = await env.press(approve, "U0BOB")  # a double click: the same payload once more
        assert again.status_code == 200
        assert slack.ephemerals() == ["Nothing changed: bob already voted in review round 2"]
        # carol is no reviewer: the Update's validator refuses her, and a refused Update writes no event
        assert (await env.press(approve, "U0CAROL")).status_code == 200
        assert slack.ephemerals()[-1].startswith("Nothing changed: carol is not a reviewer of this postmortem")
        await nothing_recorded_since(app, handle, before)
        assert len((await handle.query(PostmortemWorkflow.state)).reviews) == 2

        # erin approves too; then marks her action item done from its message
        erin_approve = await env.button("U0ERIN", "approve", not_in=(changes.ts,))
        assert erin_approve.message["ts"] != changes.ts
        assert (await env.press(erin_approve, "U0ERIN")).status_code == 200
        state = await app.wait_for(handle, lambda s: s.stage == Stage.following_up and s.items
                                   and s.items[0].ticket_key)
        item = app.client.get_workflow_handle(state.items[0].id)
        done = await env.button("U0ERIN", "item_done")
        assert done.element["value"] == f"{handle.id}#{state.items[0].id}"
        await app.wait_for(item, lambda s: s.phase == "tracking")
        assert (await env.press(done, "U0ERIN")).status_code == 200
        item_state = await app.wait_for(item, lambda s: s.item.status.value == "done")
        assert item_state.item.completed_at is not None
        assert env.message(done)["blocks"][-1]["elements"][0]["text"].startswith("✅ Marked done by Erin Reviewer")
        assert slack.requests["POST /chat.update"] == 4

        # pressed again: the item is not open any more
        before = await settled_length(app, item)
        assert (await env.press(done, "U0ERIN")).status_code == 200
        assert slack.ephemerals()[-1].startswith("Nothing changed: the item is not open (status: done")
        await nothing_recorded_since(app, item, before)
        assert slack.requests["POST /chat.update"] == 4

        # every press is in the audit log, as whose it was, done or refused
        pressed = [(a.person, a.action, a.outcome.split(":")[0], a.via)
                   for a in reversed(app.store.views.audit(handle.id))]
        assert pressed == [("bob", "button.request_changes", "ok", "chat-button"),
                           ("bob", "button.approve", "ok", "chat-button"),
                           ("bob", "button.approve", "refused", "chat-button"),
                           ("carol", "button.approve", "refused", "chat-button"),
                           ("erin", "button.approve", "ok", "chat-button")]
        assert [(a.person, a.action, a.outcome.split(":")[0]) for a in
                reversed(app.store.views.audit(state.items[0].id))] == [("erin", "button.item_done", "ok"),
                                                                        ("erin", "button.item_done", "refused")]


# --------------------------------------------------------------------------- what is refused


async def test_refused_presses_change_nothing(time_env: WorkflowEnvironment, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    async with slack_env(time_env, tmp_path, monkeypatch) as env:
        app, slack = env.app, env.slack
        handle = await in_review(env)
        approve = await env.button("U0BOB", "approve")
        good = env.payload(approve, "U0BOB")
        before = await settled_length(app, handle)

        async def refused(r: httpx.Response, status: int, error: str) -> None:
            assert r.status_code == status, r.text
            assert r.json()["error"].startswith(error), r.json()

        # authentication: 401 (a malformed timestamp 400), and nothing reaches Temporal
        await refused(await env.send(good, secret="not-the-signing-secret"), 401, "invalid X-Slack-Signature")
        await refused(await env.send(good, signature=""), 401, "missing X-Slack-Signature")
        await refused(await env.send(good, timestamp=int(time.time()) - 6 * 60), 401,
                      "X-Slack-Request-Timestamp is more than 5 minutes from now")
        await refused(await env.send(good, timestamp=int(time.time()) + 6 * 60), 401,
                      "X-Slack-Request-Timestamp is more than 5 minutes from now")
        raw = urlencode({"payload": json.dumps(good)}).encode()
        r = await env.http.post(URL, content=raw, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                            "X-Slack-Signature": sign(raw, "1", SIGNING_SECRET)})
        await refused(r, 401, "missing X-Slack-Request-Timestamp")
        r = await env.http.post(URL, content=raw, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                            "X-Slack-Request-Timestamp": "soon",
                                                            "X-Slack-Signature": sign(raw, "soon", SIGNING_SECRET)})
        await refused(r, 400, "malformed X-Slack-Request-Timestamp")
        # signed, but not what Slack sends: 400
        await refused(await env.send(body=json.dumps(good).encode(), content_type="application/json"), 400,
                      "the body must be application/x-www-form-urlencoded")
        await refused(await env.send(body=b"token=abc&team_id=T1"), 400, "missing form field payload")
        await refused(await env.send(body=b"payload=%7Bnot+json"), 400, "malformed JSON")
        await refused(await env.send(body=b"payload=%5B1%5D"), 400, "the body must be a JSON object")
        await refused(await env.send({**good, "type": "view_submission"}), 400, "unsupported interaction type")
        await refused(await env.send({**good, "user": {}}), 400, "missing field user.id")
        await refused(await env.send({**good, "actions": []}), 400, "missing field actions[0].action_id")
        assert slack.ephemerals() == []

        # signed presses closeloop cannot run: 200, and an ephemeral answer says why
        async def explained(payload: dict[str, Any], text: str) -> None:
            r = await env.send(payload)
            assert r.status_code == 200 and r.content == b"", r.text
            assert slack.ephemerals()[-1].startswith(text), slack.ephemerals()

        await explained(env.payload(approve, STRANGER), "Nothing changed: closeloop does not know your Slack "
                                                        f"account ({STRANGER})")
        # Slack's documented example as it is (but for its response_url, the stand-in's): a user and a button
        # closeloop does not know
        example = {**documented_press(), "response_url": slack.response_url(approve.channel, approve.ts)}
        await explained(example, "Nothing changed: closeloop does not know your Slack account (UA8RXUSPL)")
        unknown = env.payload(approve, "U0BOB")
        unknown["actions"][0]["action_id"] = "delete_everything"
        await explained(unknown, "Nothing changed: closeloop has no action 'delete_everything'")
        bad_value = env.payload(approve, "U0BOB")
        bad_value["actions"][0]["value"] = "nonsense"
        await explained(bad_value, "Nothing changed: the button's value 'nonsense' is not what closeloop sends")
        item_value = env.payload(approve, "U0BOB")
        item_value["actions"][0]["value"] = f"{handle.id}#{handle.id}/item-1"
        await explained(item_value, "Nothing changed: the button's value")
        gone = env.payload(approve, "U0BOB")
        gone["actions"][0]["value"] = "postmortem/api/INC-never"
        await explained(gone, "Nothing changed: this postmortem or action item is no longer followed up")
        # a link button: Slack opened the link; nothing to do, nothing to say
        count = len(slack.responses)
        link = env.payload(approve, "U0BOB")
        link["actions"][0] = {"action_id": "open_postmortem", "block_id": "=qXel", "type": "button",
                              "text": {"type": "plain_text", "text": "Read the draft", "emoji": True},
                              "action_ts": f"{time.time():.6f}"}
        r = await env.send(link)
        assert r.status_code == 200 and len(slack.responses) == count

        assert await settled_length(app, handle) == before  # none of these reached Temporal

        # dave has no slack handle: found by his email (users.info); he is no reviewer, so the Update's
        # validator refuses him, which records nothing
        await explained(env.payload(approve, DAVE), "Nothing changed: dave is not a reviewer of this postmortem")
        await nothing_recorded_since(app, handle, before)
        state = await handle.query(PostmortemWorkflow.state)
        assert state.stage == Stage.in_review and state.reviews == []
        assert slack.requests["POST /chat.update"] == 0
        assert "approve" in [e["action_id"] for b in env.message(approve)["blocks"] if b["type"] == "actions"
                             for e in b["elements"]]


async def test_no_signing_secret_refuses_everything(time_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_app(time_env, tmp_path) as app, make_web(app, Secrets({})) as http:
        body = urlencode({"payload": json.dumps(documented_press())}).encode()
        ts = str(int(time.time()))
        r = await http.post(URL, content=body, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                         "X-Slack-Request-Timestamp": ts,
                                                         "X-Slack-Signature": sign(body, ts, SIGNING_SECRET)})
        assert r.status_code == 401
        assert r.json() == {"error": "no Slack signing secret is configured on this server "
                                     "(set CLOSELOOP_SLACK_SIGNING_SECRET)"}


# --------------------------------------------------------------------------- each button's Update


class Recorded:
    """A Closeloop client that records the Updates it is asked to run (the action table, without Temporal)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    async def update(self, ref: Any, workflow_id: str, arg: Any) -> str:
        self.calls.append((ref.name, workflow_id, arg))
        return "ok"


@pytest.mark.parametrize(("action", "value", "update", "workflow_id", "arg"), [
    ("approve", "postmortem/api/INC-1", "review", "postmortem/api/INC-1",
     ReviewVote(reviewer="bob", decision=ReviewDecision.approve, comment="note")),
    ("request_changes", "postmortem/api/INC-1", "review", "postmortem/api/INC-1",
     ReviewVote(reviewer="bob", decision=ReviewDecision.request_changes, comment="note")),
    ("item_done", "postmortem/api/INC-1#postmortem/api/INC-1/item-2", "complete", "postmortem/api/INC-1/item-2",
     CompleteItem(by="bob", note="note")),
    ("effective", "postmortem/api/INC-1#postmortem/api/INC-1/item-2", "verdict", "postmortem/api/INC-1/item-2",
     VerdictInput(by="bob", effective=True, note="note")),
    ("ineffective", "postmortem/api/INC-1#item-2", "verdict", "postmortem/api/INC-1/item-2",
     VerdictInput(by="bob", effective=False, note="note")),
    ("snooze", "postmortem/api/INC-1", "snooze", "postmortem/api/INC-1", SnoozeRequest(by="bob")),
    ("snooze", "postmortem/api/INC-1#item-2", "snooze", "postmortem/api/INC-1/item-2", SnoozeRequest(by="bob")),
])
async def test_each_button_runs_its_update(action: str, value: str, update: str, workflow_id: str,
                                           arg: Any) -> None:
    recorded = Recorded()

    async def client() -> Any:
        return recorded

    assert await actions.act(client, "bob", action, value, "note") == "ok"
    assert recorded.calls == [(update, workflow_id, arg)]


@pytest.mark.parametrize(("action", "value", "reason"), [
    ("approve", "postmortem/api/INC-1#postmortem/api/INC-1/item-2", "a review names a postmortem"),
    ("item_done", "postmortem/api/INC-1", "this action needs an action item"),
    ("effective", "postmortem/api/INC-1#postmortem/api/INC-9/item-2", "the action item is not the postmortem's"),
    ("item_done", "postmortem/api/INC-1#../../etc", "bad action item id"),
    ("open_draft", "postmortem/api/INC-1", "closeloop has no action 'open_draft'"),
])
async def test_a_button_that_names_nothing_runs_nothing(action: str, value: str, reason: str) -> None:
    recorded = Recorded()

    async def client() -> Any:
        return recorded

    with pytest.raises(ActionRefused) as refused:
        await actions.act(client, "bob", action, value)
    assert reason in refused.value.reason and not refused.value.retryable
    assert recorded.calls == []


# --------------------------------------------------------------------------- the signature itself


SLACK_DOC_BODY = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
                  b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
                  b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGl"
                  b"gcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
SLACK_DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_signature_matches_slacks_worked_example() -> None:
    """The example of Slack's "Verifying requests from Slack" (its secret, timestamp, body and signature)."""
    assert sign(SLACK_DOC_BODY, "1531420618", SIGNING_SECRET) == SLACK_DOC_SIGNATURE
    assert signature_ok(SLACK_DOC_BODY, "1531420618", SLACK_DOC_SIGNATURE, (SIGNING_SECRET,))
    assert signature_ok(SLACK_DOC_BODY, "1531420618", SLACK_DOC_SIGNATURE, ("rotated-new", SIGNING_SECRET))
    assert not signature_ok(SLACK_DOC_BODY, "1531420619", SLACK_DOC_SIGNATURE, (SIGNING_SECRET,))
    assert not signature_ok(SLACK_DOC_BODY + b"&x=1", "1531420618", SLACK_DOC_SIGNATURE, (SIGNING_SECRET,))
    assert not signature_ok(SLACK_DOC_BODY, "1531420618", SLACK_DOC_SIGNATURE.removeprefix("v0="), (SIGNING_SECRET,))
    assert not signature_ok(SLACK_DOC_BODY, "1531420618", SLACK_DOC_SIGNATURE, ())
