"""A Slack Web API stand-in: `conversations.history`, shaped as Slack answers it.

    with SlackStandin(token="xoxb-test") as slack:      # 127.0.0.1, a free port
        WebClient(token="xoxb-test", base_url=slack.base_url)
        slack.add_channel("C0INCIDENT")
        slack.post("C0INCIDENT", at, "checkout is down", user="U0ALICE", reactions={"eyes": ["U0BOB"]})

Implemented (state in memory), under `/api/`: `GET|POST conversations.history` with `channel`, `oldest` /
`latest` (exclusive unless `inclusive=true`), `limit` (default 100, capped at `max_limit`) and `cursor`
paging; newest message first, `has_more` and `response_metadata.next_cursor`, `pin_count`,
`channel_actions_ts`, `channel_actions_count`, and `reactions` on the messages that have them.
Authentication is `Authorization: Bearer <token>` (or a `token` parameter). Errors come as Slack sends
them: HTTP 200 with `{"ok": false, "error": ...}` (`not_authed`, `invalid_auth`, `channel_not_found`,
`invalid_ts_oldest`, ...), 429 with `Retry-After` and `{"ok": false, "error": "ratelimited"}`; an injected
5xx answers with a plain-text body, as Slack's edge does.

Test hooks: `channels` (id -> list of message dicts), `requests` (Counter of "METHOD /method"), `add_channel()`,
`post()`, and faults, each consumed by the next matching request: `fail_next(n, status=500)`,
`rate_limit_next(retry_after=1)`, `error_next(error)` (HTTP 200, ok false). `validator(method, path, status,
body)` is called on every JSON response before it is sent (path without `/api`); whatever it raises is
recorded in `violations` (tests fail on any).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlsplit

from closeloop.standins._server import Fault, JsonHandler, StandinServer, Validator

METHODS = {"conversations.history": "history"}
TEAM = "T0STANDIN1"


class SlackError(Exception):
    def __init__(self, error: str, status: int = 200, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.error, self.status, self.headers = error, status, headers or {}


class SlackStandin(StandinServer):
    thread_name = "slack-standin"

    def __init__(self, *, token: str = "xoxb-test", max_limit: int = 999, validator: Validator | None = None) -> None:
        super().__init__(validator)
        self.token = token
        self.max_limit = max_limit
        self.channels: dict[str, list[dict[str, Any]]] = {}
        self._serve(_Handler)

    @property
    def base_url(self) -> str:
        """What slack-sdk's WebClient takes as `base_url`."""
        return self.url + "/api/"

    # ------------------------------------------------------------------ state
    def add_channel(self, channel: str) -> None:
        with self._lock:
            self.channels.setdefault(channel, [])

    def post(self, channel: str, at: datetime, text: str, *, user: str = "U0ALICE",
             reactions: dict[str, list[str]] | None = None, subtype: str | None = None) -> str:
        """A message as someone posted it at `at`; returns its `ts` (unique within the channel)."""
        with self._lock:
            messages = self.channels.setdefault(channel, [])
            micros = int(at.astimezone(UTC).timestamp() * 1_000_000)
            taken = {m["_micros"] for m in messages}
            while micros in taken:
                micros += 1
            ts = f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
            message: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts, "team": TEAM,
                                       "_micros": micros}
            if subtype:
                message["subtype"] = subtype
            if reactions:
                message["reactions"] = [{"name": name, "users": list(users), "count": len(users)}
                                        for name, users in reactions.items()]
            messages.append(message)
            messages.sort(key=lambda m: m["_micros"], reverse=True)  # newest first, as Slack lists them
            return ts

    # ------------------------------------------------------------------ faults (besides the base's)
    def error_next(self, error: str, path: str | None = None) -> None:
        self._faults.append(Fault("error", path, error=error))

    # ------------------------------------------------------------------ handlers
    def h_history(self, params: dict[str, str]) -> dict[str, Any]:
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
                    bounds[name] = int(Decimal(value) * 1_000_000)
                except InvalidOperation:
                    raise SlackError(f"invalid_ts_{name}") from None
        inclusive = params.get("inclusive", "").lower() in ("1", "true")
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
        body: dict[str, Any] = {
            "ok": True, "messages": [{k: v for k, v in m.items() if not k.startswith("_")} for m in page],
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
        try:
            handler = METHODS.get(api_method) if parts.path.startswith("/api/") else None
            if handler is None or method not in ("GET", "POST"):
                raise SlackError("unknown_method", 404)
            with s._lock:
                s.requests[f"{method} {path}"] += 1
            params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            if raw:
                ctype = self.headers.get("Content-Type", "")
                if "json" in ctype:
                    params.update({k: str(v) for k, v in json.loads(raw).items()})
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

    def _send_text(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
