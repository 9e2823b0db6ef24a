"""What the chat-webhook channels (teams, googlechat, mattermost, discord, webhook) share: a JSON POST to the
room's incoming-webhook URL with httpx, the errors classified the same way, mentions neutralised, and text cut
to each service's limits.

Why each service's own incoming-webhook format through httpx, and not Apprise (PyPI `apprise`, which knows
some hundred services behind `scheme://` URLs): closeloop needs
- exact control of the payload: an Adaptive Card for Teams, cardsV2 and a thread key per postmortem for Google
  Chat, embeds and `allowed_mentions` for Discord, `props` for Mattermost; Apprise renders a title and a body
  its own way per service and has no place for those;
- the HTTP status of the answer, to tell what a retry can fix (429 with its Retry-After, 5xx, timeouts) from
  what it cannot (400, 401, 403, 404: the notify activity then falls back to the person's next channel):
  Apprise's `notify()` answers True or False and logs the rest;
- the provider's message id (Discord's `id` with `?wait=true`, Google Chat's `name`), which Apprise drops;
- tests against local HTTP receivers, which speak the documented formats directly;
- weight: httpx is already a dependency; Apprise would bring its own HTTP stack and plugins for services
  closeloop will never post to.
Each format is a few dozen lines (the services' `channel.py`); this module is the rest.

The address of a person on these channels is the name of a webhook (closeloop.integrations.chat_settings); the
URL is looked up here, at delivery, and never leaves this module: errors name the service and the webhook.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import re
import threading
import time
from abc import abstractmethod
from typing import Any

import httpx

from closeloop.integrations.base import Channel, HttpIntegrationError, IntegrationError, Notification
from closeloop.integrations.chat_settings import ChatWebhookSettings
from closeloop.models import Person

ZWSP = "\u200b"  # a zero-width space: breaks a mention's syntax, shows nothing
# @everyone, @here, @channel, @all, @alice: an @ that starts a word (an email address keeps its @)
_AT = re.compile(r"(?<![\w.+-])@(?=[\w])")
# <!channel>, <!here>, <!everyone> (Slack-style, Mattermost too), <@123> <@&123> <#123> (Discord),
# <users/all> <users/123> (Google Chat), <at>…</at> (Teams)
_ANGLE = re.compile(r"<(?=[!@#]|users/|at>)", re.IGNORECASE)
HINTS = {400: "the service refused the message", 401: "the webhook's token is not accepted",
         403: "the webhook may not post there", 404: "the webhook was deleted, or its URL is wrong",
         410: "the webhook was deleted"}


def neutralise_mentions(text: str) -> str:
    """`text` with every mention syntax broken by a zero-width space, so that an incident title such as
    "@channel checkout is down" notifies nobody: it shows the same, and pings no one."""
    return _ANGLE.sub("<" + ZWSP, _AT.sub("@" + ZWSP, text))


def cut(text: str, limit: int, mark: str = "…") -> str:
    """`text` at most `limit` characters, ending in `mark` when cut."""
    return text if len(text) <= limit else text[: max(limit - len(mark), 0)] + mark


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def url_actions(notification: Notification) -> list[tuple[str, str]]:
    """(label, url) of the links a message shows: the postmortem's and the item's pages, then each action that
    opens a page (the others need an interactivity endpoint a webhook does not have, and are left out)."""
    found = [(label, notification.links[k]) for k, label in (("postmortem", "The postmortem"),
                                                             ("item", "The action item")) if k in notification.links]
    found += [(a.label, a.url) for a in notification.actions if a.url]
    unique: dict[str, str] = {}
    for label, url in found:
        unique.setdefault(url, label)
    return [(label, url) for url, label in unique.items()]


class ChatWebhookError(HttpIntegrationError):
    """A post to a chat webhook failed: one line naming the service and the webhook, never its URL."""


def retry_seconds(value: str | None) -> float | None:
    """A Retry-After value: seconds, or an HTTP date."""
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


class ChatWebhookChannel(Channel):
    """A channel that posts a notification to a room's incoming webhook. Subclasses give the `payload`, and may
    give query `params`, `headers`, the `message_id` of an answer, and where a 429 says how long to wait."""

    label: str  # the service as people call it, in errors: "Microsoft Teams"

    def __init__(self, settings: ChatWebhookSettings, webhooks: dict[str, str], *,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self._webhooks = dict(webhooks)
        self._transport = transport
        self._local = threading.local()

    def __repr__(self) -> str:  # never the URLs
        return f"{type(self).__name__}(webhooks={sorted(self._webhooks)})"

    @property
    def webhook_names(self) -> list[str]:
        return sorted(self._webhooks)

    # ------------------------------------------------------------------ addresses

    def address(self, person: Person) -> str | None:
        """The name of the webhook (room) the person is reached in: their handle for this channel, else
        `default_webhook`; None when neither. A name the environment does not define fails for good (the
        operator is told)."""
        handle = (person.handles.get(self.name) or "").strip()
        name = handle or self.settings.default_webhook
        if not name:
            return None
        if name not in self._webhooks:
            where = f"{person.key}'s {self.name} handle" if handle else f"{self.settings.section}.default_webhook"
            raise IntegrationError(f"{self.label}: {where} names the webhook {name!r}, which "
                                   f"{self.settings.env_webhooks} does not define (it has: "
                                   f"{', '.join(self.webhook_names) or 'none'})", retryable=False)
        return name

    # ------------------------------------------------------------------ what a subclass gives

    @abstractmethod
    def payload(self, notification: Notification) -> dict[str, Any]:
        """The JSON body, in the service's documented format, within its limits."""

    def params(self, notification: Notification) -> dict[str, str]:
        return {}

    def headers(self, notification: Notification, body: bytes) -> dict[str, str]:
        return {}

    def message_id(self, notification: Notification, response: httpx.Response) -> str:
        """The provider's id of the message, else `<service>:<hash of the key>` (deterministic)."""
        return f"{self.name}:{key_hash(notification.key)}"

    def retry_after(self, response: httpx.Response) -> float | None:
        return retry_seconds(response.headers.get("Retry-After"))

    def error_detail(self, response: httpx.Response) -> str:
        """The service's own short reason from an error answer ("" when none)."""
        try:
            data = response.json()
        except ValueError:
            return ""
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict):
                return str(error.get("message") or error.get("status") or "")
            return str(data.get("message") or error or "")
        return ""

    # ------------------------------------------------------------------ sending

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)  # one per worker thread
        if client is None:
            client = httpx.Client(timeout=self.settings.timeout, follow_redirects=False, transport=self._transport,
                                  headers={"User-Agent": "closeloop"})
            self._local.client = client
        return client

    def _scrub(self, text: str, url: str) -> str:
        """`text` without the webhook's URL or any long token-like part of it."""
        text = text.replace(url, "<webhook URL>")
        for part in re.split(r"[/?&=]", url):
            if len(part) >= 12:
                text = text.replace(part, "…")
        return " ".join(text.split())[:200]

    def deliver(self, notification: Notification, person: Person, address: str) -> str:
        where = f"{self.label} webhook {address!r}"
        url = self._webhooks.get(address)
        if url is None:
            raise IntegrationError(f"{where}: {self.settings.env_webhooks} does not define it (it has: "
                                   f"{', '.join(self.webhook_names) or 'none'})", retryable=False)
        body = json.dumps(self.payload(notification), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", **self.headers(notification, body)}
        try:
            # the webhook's own query (its token, Teams' signature) stays: httpx's `params=` would replace it
            target = httpx.URL(url).copy_merge_params(self.params(notification))
            response = self._client().post(target, content=body, headers=headers)
        except httpx.TimeoutException:
            raise ChatWebhookError(f"{where}: no answer within {self.settings.timeout:g}s", retryable=True) from None
        except httpx.HTTPError as e:  # refused, reset, DNS: a retry may find it up
            raise ChatWebhookError(f"{where}: {type(e).__name__}: {self._scrub(str(e), url)}",
                                   retryable=True) from None
        status = response.status_code
        if 200 <= status < 300:
            return self.message_id(notification, response)
        if 300 <= status < 400:
            raise ChatWebhookError(f"{where}: HTTP {status} (a redirect: the URL is not the webhook's own)",
                                   retryable=False, status=status)
        rate_limited = status == 429
        retryable = ChatWebhookError.is_retryable(status, rate_limited=rate_limited)
        wait = self.retry_after(response) if retryable else None
        detail = self._scrub(self.error_detail(response), url)
        hint = HINTS.get(status, "")
        text = f"{where}: HTTP {status}" + (f" {detail}" if detail else "") + (f" ({hint})" if hint else "")
        if wait is not None:
            text += f", retry after {wait:g}s"
        raise ChatWebhookError(text, retryable=retryable, status=status, retry_after=wait)
