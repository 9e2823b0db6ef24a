"""The Slack channel: a notification as a direct message from the closeloop app's bot, through slack-sdk.

The address is the person's Slack user id: the directory's `slack` handle when it is one (`U…`/`W…`), else
(with `lookup_by_email`) `users.lookupByEmail` of their email, kept in memory for `cache_ttl` (an email Slack
does not know, `users_not_found`, for the shorter `miss_ttl`; Slack answers that for deactivated users too).

Delivery: `conversations.open(users=U…)` gives the DM's channel id (kept for `cache_ttl`), then
`chat.postMessage` with Block Kit blocks (the subject as a header, the body as mrkdwn, the links as context,
one button per action), the subject and body as the fallback `text`, and message metadata
`{"event_type": "closeloop_notification", "event_payload": {"key": ..., "kind": ..., "postmortem_id": ...}}`.
The provider id is `<channel>:<ts>`. Slack keeps no idempotency key of its own, so after a crash between
posting and recording, `find_sent` reads the DM's history since the notification's time (minus
`find_margin`, at most `find_pages` pages, `include_all_metadata`) for a message whose metadata carries the key.

Errors are `SlackError` (an `HttpIntegrationError`), one line naming the method and Slack's error, never the
token: `ratelimited`/429 (with Retry-After, which the activity waits), 5xx, Slack's own transient errors,
timeouts and connection failures are retryable; the rest (`user_not_found`, `user_disabled`,
`channel_not_found`, `is_archived`, `cannot_dm_bot`, `account_inactive`, `invalid_auth`, `token_revoked`,
`not_authed`, `missing_scope`, `not_in_channel`, ...) are not, so the notify activity falls back to the
person's next channel and tells the operator.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Generic, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from closeloop.integrations.base import Channel, Notification
from closeloop.integrations.slack.settings import SlackNotifierSettings
from closeloop.integrations.slack.timeline import RETRYABLE_ERRORS, SlackError
from closeloop.models import Person

EVENT_TYPE = "closeloop_notification"
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
# Block Kit limits (api.slack.com/reference/block-kit): blocks per message, characters per section text,
# header text, button text, button value and url, elements per actions block and per context block.
MAX_BLOCKS, MAX_SECTION, MAX_HEADER, MAX_BUTTON_TEXT = 50, 3000, 150, 75
MAX_VALUE, MAX_URL, MAX_ACTION_ID, MAX_ACTIONS, MAX_CONTEXT = 2000, 3000, 255, 25, 10
MAX_TEXT = 4000  # the fallback text: Slack truncates past 40,000 and advises 4,000
NOT_FOUND = frozenset({"users_not_found"})

V = TypeVar("V")


class SlackApiFailure(SlackError):
    """A Slack Web API call failed; `error` is Slack's error code ("" for an HTTP failure without one)."""

    def __init__(self, message: str, *, retryable: bool, error: str = "", status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, retryable=retryable, status=status, retry_after=retry_after)
        self.error = error


class TtlCache(Generic[V]):
    """A small thread-safe map whose entries expire, each after its own time to live."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._items: dict[str, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, V | None]:
        """(found, value): found is False when absent or expired."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return False, None
            if item[0] <= self._clock():
                del self._items[key]
                return False, None
            return True, item[1]

    def put(self, key: str, value: V, ttl: timedelta) -> None:
        with self._lock:
            if len(self._items) > 10_000:  # a bound, however many people: drop what expired, else all
                now = self._clock()
                self._items = {k: v for k, v in self._items.items() if v[0] > now} if any(
                    v[0] <= now for v in self._items.values()) else {}
            self._items[key] = (self._clock() + ttl.total_seconds(), value)

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


def escape(text: str) -> str:
    """Slack's escaping of mrkdwn and plain message text: `&`, `<` and `>` as entities (nothing else)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int, mark: str = "…") -> str:
    """`text` at most `limit` characters, ending in `mark` when cut, never inside an `&…;` entity."""
    if len(text) <= limit:
        return text
    cut = limit - len(mark)
    amp = text.rfind("&", max(cut - 5, 0), cut)
    if amp != -1 and ";" not in text[amp:cut]:
        cut = amp
    return text[:cut] + mark


def _chunks(text: str, limit: int) -> list[str]:
    """Escaped `text` in pieces of at most `limit` characters, split at a line break where one is near, never
    inside an entity."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = limit
            amp = text.rfind("&", max(cut - 5, 0), cut)
            if amp != -1 and ";" not in text[amp:cut]:
                cut = amp
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n")
    if text.strip() or not pieces:
        pieces.append(text)
    return pieces


def _plain(text: str, limit: int) -> dict[str, Any]:
    text = " ".join(text.split()) or "-"
    return {"type": "plain_text", "text": text if len(text) <= limit else text[: limit - 1] + "…", "emoji": True}


def blocks_for(notification: Notification) -> list[dict[str, Any]]:
    """The message's Block Kit blocks, within Slack's limits (a long body is cut, said so)."""
    n = notification
    blocks: list[dict[str, Any]] = [{"type": "header", "text": _plain(n.subject, MAX_HEADER)}]
    context = [{"type": "mrkdwn", "text": f"<{escape(n.links[k])}|{label}>"}
               for k, label in (("postmortem", "The postmortem"), ("item", "The action item"))
               if k in n.links and len(n.links[k]) < MAX_URL]
    buttons: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, a in enumerate(n.actions):
        action_id = a.action[:MAX_ACTION_ID - 8]
        if action_id in seen:  # unique within the block, as Slack requires
            action_id = f"{action_id}#{i}"
        seen.add(action_id)
        button: dict[str, Any] = {"type": "button", "text": _plain(a.label, MAX_BUTTON_TEXT), "action_id": action_id}
        if a.url:
            if len(a.url) > MAX_URL:
                continue  # Slack would refuse the whole message
            button["url"] = a.url
        else:
            button["value"] = a.value[:MAX_VALUE]
        buttons.append(button)
    action_blocks = [{"type": "actions", "elements": buttons[i:i + MAX_ACTIONS]}
                     for i in range(0, len(buttons), MAX_ACTIONS)]
    room = MAX_BLOCKS - 1 - (1 if context else 0) - len(action_blocks)
    sections = _chunks(escape(n.body.strip("\n")), MAX_SECTION)
    if len(sections) > room:
        sections = sections[:room]
        sections[-1] = _cut(sections[-1], MAX_SECTION - 40, "") + "\n… _(cut: too long for Slack)_"
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": s}} for s in sections if s.strip()]
    if context:
        blocks.append({"type": "context", "elements": context[:MAX_CONTEXT]})
    return blocks + action_blocks


def fallback_text(notification: Notification) -> str:
    """The message's `text`: what notifications and clients without blocks show (the subject, then the body)."""
    return _cut(escape(f"{notification.subject}\n\n{notification.body.strip()}"), MAX_TEXT)


def metadata_for(notification: Notification) -> dict[str, Any]:
    payload: dict[str, Any] = {"key": notification.key, "kind": notification.kind,
                               "postmortem_id": notification.postmortem_id}
    if notification.item_id:
        payload["item_id"] = notification.item_id
    return {"event_type": EVENT_TYPE, "event_payload": payload}


class SlackChannel(Channel):
    name = "slack"

    def __init__(self, settings: SlackNotifierSettings, token: str | None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._token = token or ""
        self._users: TtlCache[str | None] = TtlCache(clock)  # email -> user id (None: Slack does not know it)
        self._dms: TtlCache[str] = TtlCache(clock)  # user id -> DM channel id
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"SlackChannel(base_url={self.settings.base_url!r})"  # never the token

    def _client(self) -> WebClient:
        client: WebClient | None = getattr(self._local, "client", None)  # one per worker thread
        if client is None:
            base = self.settings.base_url if self.settings.base_url.endswith("/") else self.settings.base_url + "/"
            client = WebClient(token=self._token, base_url=base, timeout=max(1, int(self.settings.timeout)))
            self._local.client = client
        return client

    def _call(self, method: str, what: str, **kwargs: Any) -> Any:
        """`client.<method>(**kwargs)`'s data; failures as SlackError naming the API method and `what`."""
        api = method.replace("_", ".", 1)
        try:
            return getattr(self._client(), method)(**kwargs).data
        except SlackApiError as exc:
            raise _wrap(exc, api, what) from None
        except (SlackClientError, OSError) as exc:  # timeouts, refused connections, a body that is not JSON
            raise SlackError(f"Slack {api} {what}: {type(exc).__name__}: {exc}"[:500], retryable=True) from None

    # ------------------------------------------------------------------ addresses

    def address(self, person: Person) -> str | None:
        handle = (person.handles.get("slack") or "").strip()
        if USER_ID.match(handle):
            return handle
        if not (self.settings.lookup_by_email and person.email):
            return None
        return self.user_by_email(person.email)

    def user_by_email(self, email: str) -> str | None:
        key = email.strip().lower()
        found, user = self._users.get(key)
        if found:
            return user
        try:
            data = self._call("users_lookupByEmail", f"for {person_safe(email)}", email=email)
        except SlackApiFailure as e:
            if e.error in NOT_FOUND:
                self._users.put(key, None, self.settings.miss_ttl)
                return None
            raise
        found_user = data.get("user") or {}
        user_id = found_user.get("id") if isinstance(found_user, dict) and not found_user.get("deleted") else None
        user_id = user_id if isinstance(user_id, str) and USER_ID.match(user_id) else None
        self._users.put(key, user_id, self.settings.cache_ttl if user_id else self.settings.miss_ttl)
        return user_id

    def dm_channel(self, user_id: str) -> str:
        found, channel = self._dms.get(user_id)
        if found and channel:
            return channel
        data = self._call("conversations_open", f"with {user_id}", users=user_id)
        channel = str((data.get("channel") or {}).get("id") or "")
        if not channel:
            raise SlackError(f"Slack conversations.open with {user_id}: no channel in the answer", retryable=True)
        self._dms.put(user_id, channel, self.settings.cache_ttl)
        return channel

    # ------------------------------------------------------------------ sending

    def deliver(self, notification: Notification, person: Person, address: str) -> str:
        channel = self.dm_channel(address)
        try:
            return self._post(notification, channel)
        except SlackError as e:
            if not e.retryable:
                self._dms.drop(address)  # a DM that is gone or closed to us: open it again next time
            raise

    def post_to_channel(self, notification: Notification, channel_id: str | None = None) -> str:
        """Post `notification` to a channel (an announcement): `channel_id`, else `announce_channel`. The bot must
        be a member of a private channel (`not_in_channel` otherwise). Returns `<channel>:<ts>`."""
        channel = channel_id or self.settings.announce_channel
        if not channel:
            raise SlackError("Slack chat.postMessage: no channel given and no announce_channel configured",
                             retryable=False)
        return self._post(notification, channel)

    def post(self, notification: Notification, room: str) -> str:
        """An announcement (`[notify] announce`): `room` is a channel id, "" the `announce_channel`."""
        return self.post_to_channel(notification, room or None)

    def _post(self, notification: Notification, channel: str) -> str:
        data = self._call("chat_postMessage", f"to {channel}", channel=channel, text=fallback_text(notification),
                          blocks=blocks_for(notification), metadata=metadata_for(notification),
                          unfurl_links=False, unfurl_media=False)
        return f"{data.get('channel') or channel}:{data['ts']}"

    def find_sent(self, notification: Notification, person: Person, address: str) -> str | None:
        channel = self.dm_channel(address)
        oldest = (notification.at - self.settings.find_margin).timestamp()
        cursor: str | None = None
        for _ in range(self.settings.find_pages):
            page = self._call("conversations_history", f"of {channel}", channel=channel, oldest=f"{oldest:.6f}",
                              limit=200, include_all_metadata=True, cursor=cursor)
            for message in page.get("messages") or []:
                if _key_of(message) == notification.key:
                    return f"{channel}:{message['ts']}"
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not page.get("has_more") or not cursor:
                break
        return None


def _key_of(message: Any) -> str | None:
    """The notification key in a message's closeloop metadata, else None."""
    metadata = message.get("metadata") if isinstance(message, dict) else None
    if not isinstance(metadata, dict) or metadata.get("event_type") != EVENT_TYPE:
        return None
    payload = metadata.get("event_payload")
    key = payload.get("key") if isinstance(payload, dict) else None
    return key if isinstance(key, str) else None


def person_safe(email: str) -> str:
    """An email as errors name it: the domain and the first letter (logs are not a directory)."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}…@{domain}" if domain else "an address"


NON_RETRYABLE_HINTS = {
    "invalid_auth": "the token in CLOSELOOP_SLACK_TOKEN is not valid",
    "not_authed": "no token: set CLOSELOOP_SLACK_TOKEN",
    "token_revoked": "the token was revoked: reinstall the app",
    "token_expired": "the token expired",
    "account_inactive": "the token's user or the app was deactivated",
    "missing_scope": "the app lacks a scope: see the README's manifest",
    "not_in_channel": "invite the bot to the channel",
    "is_archived": "the channel is archived",
    "channel_not_found": "no such channel, or the bot cannot see it",
    "user_not_found": "no such Slack user",
    "user_disabled": "the Slack user is deactivated",
    "cannot_dm_bot": "the address is a bot",
}


def _wrap(exc: SlackApiError, method: str, what: str) -> SlackApiFailure:
    response = exc.response
    status = getattr(response, "status_code", None)
    data = getattr(response, "data", None)
    error = str(data.get("error") or "") if isinstance(data, dict) else ""
    retry_after = None
    for name, value in (getattr(response, "headers", None) or {}).items():
        if name.lower() == "retry-after":
            try:
                retry_after = float(value)
            except (TypeError, ValueError):
                pass
    retryable = error in RETRYABLE_ERRORS or SlackError.is_retryable(status if status != 200 else None)
    detail = error if error and len(error) < 100 and re.fullmatch(r"[a-z_]+", error) else f"HTTP {status}"
    if error in NON_RETRYABLE_HINTS:
        detail += f" ({NON_RETRYABLE_HINTS[error]})"
    if error == "missing_scope" and isinstance(data, dict) and data.get("needed"):
        detail += f" needed: {str(data['needed'])[:100]}"
    return SlackApiFailure(f"Slack {method} {what}: {detail}", retryable=retryable, error=error, status=status,
                           retry_after=retry_after if retryable else None)
