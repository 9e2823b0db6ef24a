"""A Slack Web API stand-in: `conversations.history`, `users.lookupByEmail`, `conversations.open`,
`chat.postMessage` and `chat.update`, shaped as Slack answers them.

    with SlackStandin(token="xoxb-test") as slack:      # 127.0.0.1, a free port
        WebClient(token="xoxb-test", base_url=slack.base_url)
        slack.add_channel("C0INCIDENT")
        slack.post("C0INCIDENT", at, "checkout is down", user="U0ALICE", reactions={"eyes": ["U0BOB"]})
        slack.add_user("U0ALICE", "alice@example.com")   # a DM with her is opened by conversations.open

Implemented (state in memory), under `/api/`:

- `GET|POST conversations.history` with `channel`, `oldest` / `latest` (exclusive unless `inclusive=true`),
  `limit` (default 100, capped at `max_limit`) and `cursor` paging; newest message first, `has_more` and
  `response_metadata.next_cursor`, `pin_count`, `channel_actions_ts`, `channel_actions_count`, `reactions` on
  the messages that have them, and `metadata` only with `include_all_metadata=true` (as Slack does).
- `users.lookupByEmail`: the user object of a user added with `add_user`; `users_not_found` for an unknown
  email and for a deactivated user (`deleted=True`), as Slack documents.
- `conversations.open` with one user in `users`: `{"channel": {"id": "D…"}}`, the same DM each time
  (`no_op`, `already_open` after the first); `user_not_found` for an unknown user, `user_disabled` for a
  deactivated one.
- `chat.postMessage` to a channel id (or a user id: their DM): stores the message (the bot's, with `blocks`
  and `metadata` when given) at the clock's time; `ok`, `channel`, `ts`, `message`. `channel_not_found`,
  `is_archived` (`add_channel(..., archived=True)`), `not_in_channel` (`member=False`), `no_text`, and
  `invalid_blocks` when the blocks break Block Kit's limits (50 blocks, 3000 characters of section text,
  150 of header, 75 of button text, 25 elements per actions block, action_ids unique within a block).
  Posting to a deactivated user's open DM succeeds, as it does on Slack.
- `chat.update` of the bot's message: `ok`, `channel`, `ts`, `text`, `message` (without `blocks`: Slack's
  description types them as an object there); `message_not_found`, `cant_update_message`.
- `users.info` with `user`: the user object (deactivated ones too, `deleted: true`); `user_not_found`.
- A press's `response_url` (`response_url(channel, ts)` makes one for a message, under `/actions/`, as
  hooks.slack.com's are): each JSON POST is recorded in `responses` (with `_url`), answered 200 `ok` as Slack
  does; one with `replace_original: true` (and not ephemeral) replaces that message's text and blocks. Not a
  Web API method: Slack's description has no schema for it.

Authentication is `Authorization: Bearer <token>` (or a `token` parameter). Errors come as Slack sends
them: HTTP 200 with `{"ok": false, "error": ...}` (`not_authed`, `invalid_auth`, `channel_not_found`,
`invalid_ts_oldest`, ...), 429 with `Retry-After` and `{"ok": false, "error": "ratelimited"}`; an injected
5xx answers with a plain-text body, as Slack's edge does. Parameters come as a query, a form or a JSON body
(slack-sdk sends JSON to the methods that take blocks).

Test hooks: `channels` (id -> list of message dicts), `users`, `dms` (user id -> DM id), `requests` (Counter
of "METHOD /method"), `add_channel()`, `add_user()`, `post()`, `messages(channel)`, and faults, each consumed
by the next matching request (`path` e.g. "/chat.postMessage"): `fail_next(n, status=500)`,
`rate_limit_next(retry_after=1)`, `error_next(error)` (HTTP 200, ok false). `validator(method, path, status,
body)` is called on every JSON response before it is sent (path without `/api`); whatever it raises is
recorded in `violations` (tests fail on any). `clock` is the stand-in's "now" for posted messages.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlsplit

from closeloop.standins._server import Fault, JsonHandler, StandinServer, Validator

METHODS = {"conversations.history": "history", "users.lookupByEmail": "lookup", "conversations.open": "open",
           "chat.postMessage": "post_message", "chat.update": "update", "users.info": "info"}
TEAM = "T0STANDIN1"
BOT_USER, BOT_ID, APP_ID = "U0CLOSEBOT", "B0CLOSELOOP", "A0CLOSELOOP"


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def block_problems(blocks: Any) -> list[str]:
    """How `blocks` break Block Kit's limits (Slack answers `invalid_blocks`); [] when they do not."""
    if not isinstance(blocks, list):
        return ["blocks is not an array"]
    problems = [] if len(blocks) <= 50 else [f"{len(blocks)} blocks (at most 50)"]
    for i, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        text = (block.get("text") or {}) if isinstance(block, dict) else {}
        if kind == "header" and (text.get("type") != "plain_text" or not 0 < len(text.get("text", "")) <= 150):
            problems.append(f"blocks[{i}]: a header is plain_text of 1-150 characters")
        elif kind == "section" and not 0 < len(text.get("text", "")) <= 3000:
            problems.append(f"blocks[{i}]: section text of 1-3000 characters")
        elif kind == "context" and not 0 < len(block.get("elements") or []) <= 10:
            problems.append(f"blocks[{i}]: a context has 1-10 elements")
        elif kind == "actions":
            elements = block.get("elements") or []
            ids = [e.get("action_id") for e in elements if e.get("action_id")]
            if not 0 < len(elements) <= 25 or len(ids) != len(set(ids)):
                problems.append(f"blocks[{i}]: 1-25 elements with unique action_ids")
            for e in elements:
                label = (e.get("text") or {}).get("text", "")
                if e.get("type") != "button" or not 0 < len(label) <= 75 or len(e.get("value", "")) > 2000:
                    problems.append(f"blocks[{i}]: a button's text is 1-75 characters, its value at most 2000")
        elif kind not in ("header", "section", "context", "actions", "divider"):
            problems.append(f"blocks[{i}]: type {kind!r}")
    return problems


class SlackError(Exception):
    def __init__(self, error: str, status: int = 200, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.error, self.status, self.headers = error, status, headers or {}


class SlackStandin(StandinServer):
    thread_name = "slack-standin"

    def __init__(self, *, token: str = "xoxb-test", max_limit: int = 999, validator: Validator | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(validator)
        self.token = token
        self.max_limit = max_limit
        self.clock = clock or (lambda: datetime.now(UTC))
        self.channels: dict[str, list[dict[str, Any]]] = {}
        self.archived: set[str] = set()
        self.not_member: set[str] = set()
        self.users: dict[str, dict[str, Any]] = {}
        self.dms: dict[str, str] = {}
        self.responses: list[dict[str, Any]] = []  # what was POSTed to response_urls
        self._response_urls: dict[str, tuple[str, str]] = {}  # /actions/... path -> (channel, ts)
        self._serve(_Handler)

    @property
    def base_url(self) -> str:
        """What slack-sdk's WebClient takes as `base_url`."""
        return self.url + "/api/"

    # ------------------------------------------------------------------ state
    def add_channel(self, channel: str, *, archived: bool = False, member: bool = True) -> None:
        with self._lock:
            self.channels.setdefault(channel, [])
            if archived:
                self.archived.add(channel)
            if not member:
                self.not_member.add(channel)

    def add_user(self, user_id: str, email: str, *, deleted: bool = False, name: str | None = None) -> None:
        """A member of the workspace (`deleted`: deactivated)."""
        with self._lock:
            self.users[user_id] = {"email": email, "deleted": deleted, "name": name or email.split("@")[0]}

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """The channel's messages, oldest first, as stored (without the stand-in's own fields)."""
        with self._lock:
            return [{k: v for k, v in m.items() if not k.startswith("_")} for m in reversed(self.channels[channel])]

    def post(self, channel: str, at: datetime, text: str, *, user: str = "U0ALICE",
             reactions: dict[str, list[str]] | None = None, subtype: str | None = None,
             **fields: Any) -> str:
        """A message as someone posted it at `at`; returns its `ts` (unique within the channel)."""
        message: dict[str, Any] = {"type": "message", "user": user, "text": text, "team": TEAM, **fields}
        if subtype:
            message["subtype"] = subtype
        if reactions:
            message["reactions"] = [{"name": name, "users": list(users), "count": len(users)}
                                    for name, users in reactions.items()]
        return self._append(channel, at, message)["ts"]

    def _append(self, channel: str, at: datetime, message: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            messages = self.channels.setdefault(channel, [])
            micros = int(at.astimezone(UTC).timestamp() * 1_000_000)
            taken = {m["_micros"] for m in messages}
            while micros in taken:
                micros += 1
            message["ts"] = f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
            message["_micros"] = micros
            messages.append(message)
            messages.sort(key=lambda m: m["_micros"], reverse=True)  # newest first, as Slack lists them
            return message

    def response_url(self, channel: str, ts: str) -> str:
        """A press's response_url for the message `ts` in `channel`, as Slack puts in a block_actions payload."""
        with self._lock:
            path = f"/actions/{TEAM}/{len(self._response_urls) + 1:013d}/rs{len(self._response_urls) + 1:022d}"
            self._response_urls[path] = (channel, ts)
        return self.url + path

    def ephemerals(self) -> list[str]:
        """The texts of the ephemeral answers posted to response_urls, in order."""
        with self._lock:
            return [r.get("text", "") for r in self.responses if r.get("response_type") == "ephemeral"]

    def respond(self, path: str, body: dict[str, Any]) -> None:
        """A POST to a response_url: recorded, and a `replace_original` applied to its message."""
        with self._lock:
            self.responses.append({**body, "_url": path})
            target = self._response_urls.get(path)
            if target is None or not _flag(body.get("replace_original", False)) or \
                    body.get("response_type") == "ephemeral":
                return
            channel, ts = target
            message = next((m for m in self.channels.get(channel, []) if m["ts"] == ts), None)
            if message is not None:
                message["text"] = str(body.get("text") or "")
                if body.get("blocks") is not None:
                    message["blocks"] = body["blocks"]

    # ------------------------------------------------------------------ faults (besides the base's)
    def error_next(self, error: str, path: str | None = None) -> None:
        self._faults.append(Fault("error", path, error=error))

    # ------------------------------------------------------------------ handlers
    def user_object(self, user_id: str) -> dict[str, Any]:
        """A user as users.lookupByEmail and users.info answer it."""
        u = self.users[user_id]
        name = u["name"]
        profile = {"title": "", "phone": "", "skype": "", "real_name": name.title(), "real_name_normalized":
                   name.title(), "display_name": name, "display_name_normalized": name, "fields": None,
                   "status_text": "", "status_emoji": "", "status_expiration": 0, "avatar_hash": "g0123456789a",
                   "email": u["email"], "first_name": name.title(), "last_name": "",
                   "image_24": f"https://secure.gravatar.com/avatar/{user_id}.jpg?s=24",
                   "image_72": f"https://secure.gravatar.com/avatar/{user_id}.jpg?s=72", "team": TEAM}
        return {"id": user_id, "team_id": TEAM, "name": name, "deleted": u["deleted"], "color": "9f69e7",
                "real_name": name.title(), "tz": "Europe/London", "tz_label": "Greenwich Mean Time", "tz_offset": 0,
                "profile": profile, "is_admin": False, "is_owner": False, "is_primary_owner": False,
                "is_restricted": False, "is_ultra_restricted": False, "is_bot": False, "is_app_user": False,
                "updated": 1767225600, "is_email_confirmed": True, "who_can_share_contact_card": "EVERYONE"}

    def h_lookup(self, params: dict[str, Any]) -> dict[str, Any]:
        email = str(params.get("email") or "").strip().lower()
        with self._lock:
            for user_id, u in self.users.items():
                if u["email"].lower() == email and not u["deleted"]:
                    return {"ok": True, "user": self.user_object(user_id)}
        raise SlackError("users_not_found")

    def h_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = str(params.get("user") or "")
        with self._lock:
            if user_id not in self.users:
                raise SlackError("user_not_found")
            return {"ok": True, "user": self.user_object(user_id)}

    def h_open(self, params: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(params.get("users") or "").split(",") if u]
        if params.get("channel"):
            raise SlackError("method_not_supported_for_channel_type")  # reopening by id: not implemented
        if not users:
            raise SlackError("users_list_not_supplied")
        if len(users) > 1:
            raise SlackError("method_not_supported_for_channel_type")  # group DMs: not implemented
        with self._lock:
            user = self.users.get(users[0])
            if user is None:
                raise SlackError("user_not_found")
            if user["deleted"]:
                raise SlackError("user_disabled")
            opened = users[0] in self.dms
            if not opened:
                self.dms[users[0]] = f"D0DM{len(self.dms) + 1:05d}"
                self.channels.setdefault(self.dms[users[0]], [])
            body: dict[str, Any] = {"ok": True, "channel": {"id": self.dms[users[0]]}}
            if opened:
                body.update(no_op=True, already_open=True)
            return body

    def _target(self, params: dict[str, Any]) -> str:
        channel = str(params.get("channel") or "")
        with self._lock:
            if channel in self.users and channel in self.dms:  # a user id: their DM
                channel = self.dms[channel]
            if channel not in self.channels:
                raise SlackError("channel_not_found")
            if channel in self.archived:
                raise SlackError("is_archived")
            if channel in self.not_member:
                raise SlackError("not_in_channel")
        return channel

    @staticmethod
    def _content(params: dict[str, Any]) -> tuple[str, Any]:
        text, blocks = str(params.get("text") or ""), params.get("blocks")
        if isinstance(blocks, str):
            try:
                blocks = json.loads(blocks)
            except ValueError:
                raise SlackError("invalid_blocks") from None
        if blocks is not None and block_problems(blocks):
            raise SlackError("invalid_blocks")
        if not text and not blocks:
            raise SlackError("no_text")
        return text, blocks

    def h_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._target(params)
        text, blocks = self._content(params)
        message: dict[str, Any] = {"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "app_id": APP_ID,
                                   "text": text, "team": TEAM}
        if blocks:
            message["blocks"] = blocks
        metadata = params.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        if isinstance(metadata, dict) and metadata.get("event_type"):
            message["metadata"] = {"event_type": metadata["event_type"],
                                   "event_payload": metadata.get("event_payload") or {}}
        for flag in ("unfurl_links", "unfurl_media"):
            if flag in params:
                message[f"_{flag}"] = _flag(params[flag])
        stored = self._append(channel, self.clock(), message)
        shown = {k: v for k, v in stored.items() if not k.startswith("_")}
        return {"ok": True, "channel": channel, "ts": stored["ts"], "message": shown}

    def h_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._target(params)
        text, blocks = self._content(params)
        with self._lock:
            message = next((m for m in self.channels[channel] if m["ts"] == str(params.get("ts") or "")), None)
            if message is None:
                raise SlackError("message_not_found")
            if message.get("bot_id") != BOT_ID:
                raise SlackError("cant_update_message")
            message["text"] = text
            if blocks is not None:
                message["blocks"] = blocks
            message["edited"] = {"user": BOT_USER, "ts": f"{self.clock().timestamp():.6f}"}
        return {"ok": True, "channel": channel, "ts": message["ts"], "text": text,
                "message": {"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "text": text, "team": TEAM}}

    def h_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel") or ""
        with self._lock:
            if channel not in self.channels:
                raise SlackError("channel_not_found")
            messages = list(self.channels[channel])
        bounds = {}
        for name in ("oldest", "latest"):
            value = params.get(name)
            if value:
                try:
                    bounds[name] = int(Decimal(str(value)) * 1_000_000)
                except InvalidOperation:
                    raise SlackError(f"invalid_ts_{name}") from None
        inclusive = _flag(params.get("inclusive", ""))
        oldest, latest = bounds.get("oldest"), bounds.get("latest")
        chosen = [m for m in messages
                  if (oldest is None or m["_micros"] > oldest or (inclusive and m["_micros"] == oldest))
                  and (latest is None or m["_micros"] < latest or (inclusive and m["_micros"] == latest))]
        try:
            limit = max(1, min(int(params.get("limit") or 100), self.max_limit))
        except ValueError:
            raise SlackError("invalid_arg_name") from None
        offset = 0
        if params.get("cursor"):
            try:
                seen_channel, offset = json.loads(base64.b64decode(params["cursor"]))
                assert seen_channel == channel and isinstance(offset, int)
            except Exception:  # noqa: BLE001 - Slack answers any bad cursor the same way
                raise SlackError("invalid_cursor") from None
        page = chosen[offset:offset + limit]
        has_more = offset + limit < len(chosen)
        with_metadata = _flag(params.get("include_all_metadata", ""))
        body: dict[str, Any] = {
            "ok": True, "messages": [{k: v for k, v in m.items()
                                      if not k.startswith("_") and (with_metadata or k != "metadata")}
                                     for m in page],
            "has_more": has_more, "pin_count": 0, "channel_actions_ts": None, "channel_actions_count": 0,
        }
        if has_more:
            cursor = base64.b64encode(json.dumps([channel, offset + limit]).encode()).decode()
            body["response_metadata"] = {"next_cursor": cursor}
        return body


class _Handler(JsonHandler):
    standin: SlackStandin

    def _dispatch(self, method: str) -> None:
        s = self.standin
        parts = urlsplit(self.path)
        raw = self._read_body()
        api_method = parts.path.removeprefix("/api/")
        path = "/" + api_method
        if parts.path.startswith("/actions/") and method == "POST":
            self._response_url(parts.path, raw)
            return
        try:
            handler = METHODS.get(api_method) if parts.path.startswith("/api/") else None
            if handler is None or method not in ("GET", "POST"):
                raise SlackError("unknown_method", 404)
            with s._lock:
                s.requests[f"{method} {path}"] += 1
            params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            if raw:
                ctype = self.headers.get("Content-Type", "")
                if "json" in ctype:
                    params.update(json.loads(raw))  # blocks and metadata as JSON, flags as booleans
                else:
                    params.update({k: v[-1] for k, v in parse_qs(raw.decode()).items()})
            if fault := s._take_fault(method, path):
                if fault.kind == "rate":
                    raise SlackError("ratelimited", 429, {"Retry-After": str(fault.kw["retry_after"])})
                if fault.kind == "error":
                    raise SlackError(fault.kw["error"])
                self._send_text(fault.kw["status"], "Internal Server Error (injected)")
                return
            auth = self.headers.get("Authorization", "")
            given = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else params.get("token", "")
            if not given:
                raise SlackError("not_authed")
            if given != s.token:
                raise SlackError("invalid_auth")
            self._send_json(200, getattr(s, f"h_{handler}")(params), path)
        except SlackError as err:
            try:
                self._send_json(err.status, {"ok": False, "error": err.error}, path, err.headers)
            except OSError:
                pass
        except OSError:
            pass  # the client went away

    def _response_url(self, path: str, raw: bytes) -> None:
        """hooks.slack.com's answer: 200 `ok`, or 400 `invalid_payload` for a body that is not a JSON object."""
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError(body)
        except ValueError:
            self._send_text(400, "invalid_payload")
            return
        self.standin.respond(path, body)  # recorded in `responses`, not `requests` (nothing to validate)
        self._send_text(200, "ok")

    def _send_text(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
