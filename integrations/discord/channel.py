"""Discord: a notification posted to a channel by a webhook (Execute Webhook, `?wait=true`).

The message: `content` is the subject (at most 2,000 characters), and one embed carries the rest: its
`title` the subject (256), its `url` the postmortem's page, its `description` the body then a line of links
(the item, each action that opens a page; actions that would call back are left out: a webhook cannot), at
most 4,096 characters (cut and said so), and its `timestamp` the notification's time. `allowed_mentions`
`{"parse": []}` makes Discord ping nobody whatever the text says, and the text's `@everyone`, `@here` and
`<@…>` are neutralised as well, so they do not even look like mentions.

With `wait=true` Discord answers with the message it created: the message id is its `id`. Discord keeps no
idempotency key for webhooks, so a retry after a crash between Discord's answer and closeloop's record posts
twice. Errors: 429 is retried after the answer's `retry_after` (seconds, JSON) or Retry-After; 5xx and
timeouts are retried; 400 (a payload Discord refuses, with its first error), 401 (an invalid token), 403 and
404 (`Unknown Webhook`: deleted) are not, and name the webhook only.
"""

from __future__ import annotations

from typing import Any

import httpx

from closeloop.integrations.base import Notification
from closeloop.integrations.chat import ChatWebhookChannel, cut, neutralise_mentions, retry_seconds, url_actions
from closeloop.integrations.discord.settings import DiscordSettings

MAX_CONTENT, MAX_TITLE, MAX_DESCRIPTION, MAX_EMBED = 2000, 256, 4096, 6000
CUT_MARK = "\n… *(cut: too long for Discord)*"


def _label(text: str) -> str:
    return text.replace("[", "(").replace("]", ")")


class DiscordChannel(ChatWebhookChannel):
    name = "discord"
    label = "Discord"
    settings: DiscordSettings

    def description(self, notification: Notification) -> str:
        links = " · ".join(f"[{_label(label)}]({url})" for label, url in url_actions(notification)
                           if url != notification.links.get("postmortem"))
        tail = f"\n\n{links}" if links else ""
        body = neutralise_mentions(notification.body.strip("\n"))
        room = MAX_DESCRIPTION - len(tail)
        if len(body) > room:
            body = body[: max(room - len(CUT_MARK), 0)] + CUT_MARK
        return body + tail

    def payload(self, notification: Notification) -> dict[str, Any]:
        n = notification
        subject = neutralise_mentions(" ".join(n.subject.split()))
        embed: dict[str, Any] = {"title": cut(subject, MAX_TITLE), "description": self.description(n),
                                 "timestamp": n.at.isoformat(), "footer": {"text": f"closeloop · {n.kind}"[:100]}}
        if "postmortem" in n.links:
            embed["url"] = n.links["postmortem"]
        message: dict[str, Any] = {"content": cut(subject, MAX_CONTENT), "embeds": [embed],
                                   "allowed_mentions": {"parse": []}}
        if self.settings.username:
            message["username"] = self.settings.username
        if self.settings.avatar_url:
            message["avatar_url"] = self.settings.avatar_url
        return message

    def params(self, notification: Notification) -> dict[str, str]:
        return {"wait": "true"}

    def message_id(self, notification: Notification, response: httpx.Response) -> str:
        try:
            found = response.json().get("id")
        except (ValueError, AttributeError):
            found = None
        return str(found) if isinstance(found, str | int) and found else super().message_id(notification, response)

    def retry_after(self, response: httpx.Response) -> float | None:
        try:
            data = response.json()
            wait = data.get("retry_after") if isinstance(data, dict) else None
            if isinstance(wait, int | float) and wait >= 0:
                return float(wait)
        except ValueError:
            pass
        return retry_seconds(response.headers.get("Retry-After"))

    def error_detail(self, response: httpx.Response) -> str:
        """Discord's message, and for a 400 the first field it refused (`embeds.0.description: Must be 4096 or
        fewer in length.`)."""
        try:
            data = response.json()
        except ValueError:
            return ""
        if not isinstance(data, dict):
            return ""
        detail = str(data.get("message") or "")
        errors = data.get("errors")
        path: list[str] = []
        while isinstance(errors, dict) and "_errors" not in errors and errors:
            key, errors = next(iter(errors.items()))
            path.append(str(key))
        if isinstance(errors, dict) and isinstance(errors.get("_errors"), list) and errors["_errors"]:
            first = errors["_errors"][0]
            if isinstance(first, dict):
                detail += f": {'.'.join(path)}: {first.get('message', '')}"
        return detail
