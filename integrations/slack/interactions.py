"""Slack's interactivity endpoint: `POST /webhooks/slack/interactions`, where Slack sends a `block_actions`
payload when someone presses a button of one of closeloop's messages (integrations/slack/channel.py puts
`action_id` = the action, `value` = `<postmortem id>` or `<postmortem id>#<item id>`).

Authentication (api.slack.com/authentication/verifying-requests-from-slack): `X-Slack-Signature` is `v0=` +
the hex HMAC-SHA256, under the app's signing secret (CLOSELOOP_SLACK_SIGNING_SECRET; several, comma-separated,
while one is rotated), of `v0:{X-Slack-Request-Timestamp}:{raw body}`, compared in constant time; a timestamp
more than 5 minutes from now is refused (a replayed request). Refusals, each a JSON `{"error": ...}`, and
nothing reaches Temporal:

- no signing secret configured, missing or wrong signature, missing or old timestamp: 401; a timestamp that is
  not a number: 400;
- not `application/x-www-form-urlencoded`, no `payload` field, a payload that is not a JSON object, another
  type than `block_actions`, no `user.id` or no `actions[0].action_id`: 400 (Slack shows the person a warning).

A signed press is answered 200 at once, with an empty body (Slack wants an answer within 3 seconds, and a
Workflow Update may take longer), and handled after the answer, in the request's background task:

- a link button (`open_draft`, ...: no value) needs nothing;
- the Slack user is mapped to a person of the directory: the one whose `slack` handle is the user id, else (with
  `[notifiers.slack] lookup_by_email` and a bot token) the one whose email is the user's (`users.info`, kept
  for `cache_ttl`);
- the action runs as that person (`WebhookContext.act`: the same Update as the CLI, whose validator decides);
- done: the message is updated (`chat.update` with the bot token; without a token, through the `response_url`
  with `replace_original`): its buttons are replaced by a context line such as "✅ Approved by Bob Reviewer at
  14:05 UTC";
- refused (a Slack user closeloop does not know, an action or value closeloop never sends, a person the
  Update's validator refuses, a second press of the same button, an ended lifecycle, Temporal unavailable):
  an ephemeral message to the person, through the payload's `response_url`, says why; nothing changed, and
  the original message keeps its buttons. An unknown action or malformed value is answered 200 and explained
  this way rather than with a 400: the request is Slack's own, and a 400 would only show a warning icon.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from closeloop.directory import Directory
from closeloop.integrations.base import ActionRefused, InteractionWebhook, WebhookContext
from closeloop.integrations.slack.channel import USER_ID, TtlCache, escape
from closeloop.integrations.slack.settings import ENV_SIGNING_SECRET, SlackNotifierSettings
from closeloop.message_actions import CHANGING
from closeloop.models import Person
from closeloop.web.requests import MAX_SIGNATURES, Reject, json_object, read_body

log = structlog.get_logger("closeloop.web")

MAX_SKEW = 5 * 60  # seconds between X-Slack-Request-Timestamp and now, either way (Slack's advice)
# Slack documents no maximum for interaction payloads; the message it carries is at most 50 blocks of 3,000
# characters, which form-encoded stays under 1 MiB.
MAX_BODY_BYTES = 1024 * 1024
FORM = "application/x-www-form-urlencoded"

# The context line that replaces the buttons once the action is done ({name}: the person's name).
DONE_LINES = {"approve": "✅ Approved by {name}", "request_changes": "✏️ Changes requested by {name}",
              "item_done": "✅ Marked done by {name}", "effective": "✅ {name}: it worked",
              "ineffective": "❌ {name}: it did not work", "snooze": "💤 Snoozed for a day by {name}"}
# What the Update records as the comment or note; a review's request for changes needs one.
NOTES = {"request_changes": "Changes requested from Slack, without a comment: ask {name} which.",
         "item_done": "Marked done from Slack.", "effective": "From Slack.", "ineffective": "From Slack."}


def signature_ok(body: bytes, timestamp: str, header: str, secrets: tuple[str, ...]) -> bool:
    """True when one of the header's `v0=` signatures is the HMAC-SHA256 (hex) of `v0:{timestamp}:{body}` under
    one of the secrets; every pair compared, in constant time."""
    given = [part.strip()[3:].lower().encode("utf-8", "surrogateescape")
             for part in header.split(",")[:MAX_SIGNATURES] if part.strip().startswith("v0=")]
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8", "surrogateescape"), base, hashlib.sha256).hexdigest().encode()
        for signature in given:
            matched |= hmac.compare_digest(expected, signature)
    return matched


def sign(body: bytes, timestamp: str, secret: str) -> str:
    """The `X-Slack-Signature` Slack sends for `body` at `timestamp` (for tests and tools)."""
    return "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Press:
    """One button press, as the block_actions payload tells it."""

    user_id: str
    action: str  # the action_id without the `#i` suffix a repeated action_id gets
    value: str
    channel: str = ""
    message_ts: str = ""
    ephemeral: bool = False
    response_url: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""


def _text(value: Any, limit: int = 3000) -> str:
    return value[:limit] if isinstance(value, str) else ""


def press_of(payload: dict[str, Any]) -> Press:
    """The press in a block_actions payload, or Reject(400) naming what is missing."""
    kind = payload.get("type")
    if kind != "block_actions":
        raise Reject(400, f"unsupported interaction type {str(kind)[:40]!r}: closeloop's messages have buttons only "
                          "(block_actions)")
    user = payload.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 40:
        raise Reject(400, "missing field user.id")
    actions = payload.get("actions")
    first = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
    action_id = first.get("action_id")
    if not isinstance(action_id, str) or not action_id:
        raise Reject(400, "missing field actions[0].action_id")
    container = _obj(payload.get("container"))
    message = _obj(payload.get("message"))
    blocks = message.get("blocks")
    return Press(user_id=user_id.strip(), action=action_id.partition("#")[0][:100],
                 value=_text(first.get("value"), 2000),
                 channel=_text(container.get("channel_id") or _obj(payload.get("channel")).get("id"), 40),
                 message_ts=_text(container.get("message_ts") or message.get("ts"), 40),
                 ephemeral=container.get("is_ephemeral") is True,
                 response_url=_text(payload.get("response_url"), 2000),
                 blocks=[b for b in blocks if isinstance(b, dict)] if isinstance(blocks, list) else [],
                 text=_text(message.get("text"), 4000))


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def done_blocks(press: Press, line: str) -> list[dict[str, Any]]:
    """The message's blocks with its buttons replaced by the context line saying what was done."""
    kept = [b for b in press.blocks if b.get("type") != "actions"]
    return [*kept[:49], {"type": "context", "elements": [{"type": "mrkdwn", "text": line}]}]


class SlackInteractionWebhook(InteractionWebhook):
    path = "slack/interactions"
    secret_names = (ENV_SIGNING_SECRET,)
    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, settings: SlackNotifierSettings, token: str | None, directory: Directory, *,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._token = token or ""
        self._clock = clock
        self._by_handle = {(p.handles.get("slack") or "").strip(): p for p in directory.values()
                           if (p.handles.get("slack") or "").strip()}
        self._by_email = {p.email.strip().lower(): p for p in directory.values() if p.email}
        self._emails: TtlCache[str | None] = TtlCache(monotonic)  # Slack user id -> their email (None: none)

    def __repr__(self) -> str:
        return f"SlackInteractionWebhook(base_url={self.settings.base_url!r})"  # never the token

    # ------------------------------------------------------------------ the request

    async def handle(self, request: Request, ctx: WebhookContext) -> Response:
        body = await read_body(request, ctx.max_body_bytes)
        self.verify(request, body, ctx.secrets.values(ENV_SIGNING_SECRET))
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != FORM:
            raise Reject(400, f"the body must be {FORM}, as Slack sends interaction payloads")
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
        except (UnicodeDecodeError, ValueError):
            raise Reject(400, "malformed form body") from None
        if not fields.get("payload"):
            raise Reject(400, "missing form field payload")
        press = press_of(json_object(fields["payload"][-1].encode("utf-8", "surrogateescape")))
        if press.action not in CHANGING and not press.value:
            return Response(status_code=200)  # a link button: Slack opened the link, nothing to do here
        log.info("slack_press", action=press.action, user=press.user_id)
        return Response(status_code=200, background=BackgroundTask(self.run, press, ctx))

    def verify(self, request: Request, body: bytes, secrets: tuple[str, ...]) -> None:
        if not secrets:
            raise Reject(401, f"no Slack signing secret is configured on this server (set {ENV_SIGNING_SECRET})")
        timestamp = (request.headers.get("x-slack-request-timestamp") or "").strip()
        if not timestamp:
            raise Reject(401, "missing X-Slack-Request-Timestamp")
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            raise Reject(400, "malformed X-Slack-Request-Timestamp: seconds since the epoch expected")
        header = request.headers.get("x-slack-signature")
        if not header:
            raise Reject(401, "missing X-Slack-Signature")
        if abs(self._clock() - int(timestamp)) > MAX_SKEW:
            log.warning("slack_old_timestamp", timestamp=timestamp)
            raise Reject(401, "X-Slack-Request-Timestamp is more than 5 minutes from now: refused as a replay")
        if not signature_ok(body, timestamp, header, secrets):
            log.warning("slack_bad_signature", timestamp=timestamp)
            raise Reject(401, "invalid X-Slack-Signature")

    # ------------------------------------------------------------------ after the answer

    async def run(self, press: Press, ctx: WebhookContext) -> None:
        """Run the press as its person and show the result; every failure is logged, never raised (the answer
        is sent already)."""
        try:
            person = await self.person(press.user_id)
            if person is None:
                log.info("slack_unknown_user", user=press.user_id)
                await self.ephemeral(press, f"Nothing changed: closeloop does not know your Slack account "
                                            f"({press.user_id}). Ask its admin to add your `slack` handle "
                                            "to the people directory.")
                return
            name = person.name or person.key
            note = NOTES.get(press.action, "").format(name=name)
            try:
                await ctx.act(person.key, press.action, press.value, note)
            except ActionRefused as e:
                await self.ephemeral(press, f"Nothing changed: {e.reason}")
                return
            line = f"{DONE_LINES.get(press.action, 'Done by {name}').format(name=escape(name))} " \
                   f"at {datetime.now(UTC):%H:%M} UTC"
            await self.show_done(press, line)
        except Exception as e:  # noqa: BLE001 - after the answer: nobody to tell but the log
            log.error("slack_press_failed", action=press.action, user=press.user_id,
                      error=f"{type(e).__name__}: {e}"[:300])

    async def person(self, user_id: str) -> Person | None:
        """The directory's person for a Slack user: by `slack` handle, else by the email Slack has for them."""
        found = self._by_handle.get(user_id)
        if found is not None or not (self.settings.lookup_by_email and self._token and USER_ID.match(user_id)):
            return found
        cached, email = self._emails.get(user_id)
        if not cached:
            email = await asyncio.to_thread(self._email_of, user_id)
            self._emails.put(user_id, email, self.settings.cache_ttl if email else self.settings.miss_ttl)
        return self._by_email.get(email) if email else None

    def _client(self) -> WebClient:
        base = self.settings.base_url if self.settings.base_url.endswith("/") else self.settings.base_url + "/"
        return WebClient(token=self._token, base_url=base, timeout=max(1, int(self.settings.timeout)))

    def _email_of(self, user_id: str) -> str | None:
        try:
            data = self._client().users_info(user=user_id).data
        except (SlackApiError, SlackClientError, OSError) as e:
            log.warning("slack_users_info_failed", user=user_id, error=_slack_error(e))
            return None
        user = data.get("user") if isinstance(data, dict) else None
        profile = user.get("profile") if isinstance(user, dict) and not user.get("deleted") else None
        email = profile.get("email") if isinstance(profile, dict) else None
        return email.strip().lower() if isinstance(email, str) and email.strip() else None

    async def ephemeral(self, press: Press, text: str) -> None:
        """A message only the person sees, in reply to their press (the payload's response_url)."""
        await self._respond(press, {"response_type": "ephemeral", "replace_original": False, "text": text})

    async def show_done(self, press: Press, line: str) -> None:
        """The message, its buttons replaced by `line`: chat.update with the bot token, else the response_url."""
        blocks = done_blocks(press, line)
        text = f"{press.text}\n{line}" if press.text else line
        if self._token and press.channel and press.message_ts and not press.ephemeral:
            try:
                await asyncio.to_thread(self._client().chat_update, channel=press.channel, ts=press.message_ts,
                                        text=text[:4000], blocks=blocks)
                return
            except (SlackApiError, SlackClientError, OSError) as e:
                log.warning("slack_update_failed", channel=press.channel, error=_slack_error(e))
        await self._respond(press, {"replace_original": True, "text": text[:4000], "blocks": blocks})

    async def _respond(self, press: Press, body: dict[str, Any]) -> None:
        if not re.match(r"^https?://", press.response_url):
            log.warning("slack_no_response_url", action=press.action, user=press.user_id)
            return
        timeout = max(1, int(self.settings.timeout))
        try:
            answer = await asyncio.to_thread(WebhookClient(press.response_url, timeout=timeout).send_dict, body)
        except (SlackClientError, OSError) as e:
            log.warning("slack_response_url_failed", error=_slack_error(e))
            return
        if answer.status_code != 200:
            log.warning("slack_response_url_refused", status=answer.status_code, body=str(answer.body)[:200])


def _slack_error(e: Exception) -> str:
    response = getattr(e, "response", None)
    data = getattr(response, "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])[:100]
    return f"{type(e).__name__}: {e}"[:200]
