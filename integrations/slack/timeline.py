"""Timeline source: the incident channel's messages, through slack-sdk (`conversations.history`).

The channel is the incident's first service's (`service_channels`), else the incident link whose URL is a
Slack channel (`https://<workspace>.slack.com/archives/C0123ABCD`, `https://app.slack.com/client/T…/C…`), else
the configured `channel`; with none, the source has nothing to say. It reads the messages posted between
the incident's start minus `before` and its resolution, following `response_metadata.next_cursor` while
`has_more`.

Reactions mark key moments: a message carrying a reaction of the `reactions` map (e.g. `eyes` ->
acknowledge, `white_check_mark` -> resolution) becomes an event of that kind, flagged as a key moment (the
first mapped reaction on the message decides); other messages are `message` events. The author is the
person whose `slack` handle is the message's user, else the Slack user id.

Errors become `SlackError` (an `HttpIntegrationError`). Slack answers most errors with HTTP 200 and
`ok: false`: `ratelimited` (429, with Retry-After), `internal_error`, `fatal_error`, `service_unavailable`,
`request_timeout`, 5xx and connection failures are retryable; `invalid_auth`, `not_authed`,
`channel_not_found`, `missing_scope` and the rest are not. The client retries nothing itself (connection
errors aside): retries belong to the activity.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import Field
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from closeloop.integrations.base import HttpIntegrationError, TimelineSource, report_progress
from closeloop.integrations.slack.settings import SlackTimelineSettings
from closeloop.models import Incident, Person, TimelineEvent
from closeloop.timeline import incident_window

RETRYABLE_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                              "request_timeout"})
SKIPPED_SUBTYPES = frozenset({"channel_join", "channel_leave", "channel_topic", "channel_purpose", "channel_name"})
_CHANNEL_URL = re.compile(r"^https://[\w.-]*slack\.com/(?:archives|client/[A-Z0-9]+)/([CG][A-Z0-9]{2,})(?:[/?#]|$)")


class SlackError(HttpIntegrationError):
    pass


class SlackTimelineConfig(SlackTimelineSettings):
    """`[timeline.*]` (SlackTimelineSettings, whose defaults are the only ones) plus what comes from the environment and
    tuning the config file does not expose."""

    token: str = Field(default="", repr=False)



def channel_from_url(url: str) -> str | None:
    m = _CHANNEL_URL.match(url.strip())
    return m.group(1) if m else None


def _ts(value: datetime) -> str:
    return f"{value.timestamp():.6f}"


class SlackTimelineSource(TimelineSource):
    name = "slack"

    def __init__(self, config: SlackTimelineConfig, people: dict[str, Person] | None = None) -> None:
        self.config = config
        self.users = {p.handles["slack"]: key for key, p in (people or {}).items() if p.handles.get("slack")}

    def channel_for(self, incident: Incident) -> str | None:
        for service in incident.services[:1]:
            if service in self.config.service_channels:
                return self.config.service_channels[service]
        for link in incident.links:
            if channel := channel_from_url(link.url):
                return channel
        return self.config.channel

    def _client(self) -> WebClient:
        base = self.config.base_url if self.config.base_url.endswith("/") else self.config.base_url + "/"
        return WebClient(token=self.config.token, base_url=base, timeout=max(1, int(self.config.timeout)))

    def history(self, channel: str, oldest: datetime, latest: datetime) -> list[dict[str, Any]]:
        client = self._client()
        messages: list[dict[str, Any]] = []
        cursor: str | None = None
        try:
            for _ in range(self.config.max_pages):
                page = client.conversations_history(channel=channel, oldest=_ts(oldest), latest=_ts(latest),
                                                    inclusive=True, limit=self.config.page_size, cursor=cursor)
                messages.extend(m for m in page.get("messages") or [] if isinstance(m, dict))
                report_progress(len(messages))
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not page.get("has_more") or not cursor:
                    break
        except SlackApiError as exc:
            raise _wrap(exc, channel) from exc
        except (SlackClientError, OSError) as exc:
            raise SlackError(f"Slack conversations.history {channel}: {type(exc).__name__}: {exc}"[:1000],
                             retryable=True) from exc
        return messages

    def fetch(self, incident: Incident) -> list[TimelineEvent]:
        channel = self.channel_for(incident)
        if channel is None:
            return []
        try:
            oldest, latest = incident_window(incident, before=self.config.slack_before, now=datetime.now(UTC))
        except ValueError as e:
            raise SlackError(str(e), retryable=False) from None
        events = [self.event(m, channel) for m in self.history(channel, oldest, latest)]
        return [e for e in events if e is not None]

    def event(self, message: dict[str, Any], channel: str) -> TimelineEvent | None:
        if message.get("subtype") in SKIPPED_SUBTYPES:
            return None
        try:
            at = datetime.fromtimestamp(float(message["ts"]), UTC)
        except (KeyError, TypeError, ValueError):
            return None
        text = " ".join(str(message.get("text") or "").split())
        if not text:
            return None
        kind, key = "message", False
        for reaction in message.get("reactions") or []:
            mapped = self.config.reactions.get(str((reaction or {}).get("name")))
            if mapped:
                kind, key = mapped, True
                break
        user = message.get("user") or message.get("username") or message.get("bot_id")
        actor = self.users.get(str(user), str(user)) if user else None
        return TimelineEvent(at=at, source="slack", kind=kind, text=text[:2000], actor=actor, key_moment=key)


def _wrap(exc: SlackApiError, channel: str) -> SlackError:
    response = exc.response
    status = getattr(response, "status_code", None)
    data = getattr(response, "data", None)
    error = str(data.get("error") or "") if isinstance(data, dict) else ""
    headers = getattr(response, "headers", None) or {}
    retry_after = None
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                retry_after = float(value)
            except (TypeError, ValueError):
                pass
    retryable = error in RETRYABLE_ERRORS or SlackError.is_retryable(status if status != 200 else None)
    detail = error if error and len(error) < 100 else f"HTTP {status}"
    return SlackError(f"Slack conversations.history {channel}: {detail}", retryable=retryable, status=status,
                      retry_after=retry_after)
