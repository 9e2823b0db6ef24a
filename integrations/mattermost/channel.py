"""Mattermost: a notification posted to a channel by an incoming webhook.

The post: `text` in Markdown (the subject as a heading, the body, then a line of links: the postmortem, the
item, each action that opens a page; actions that would call back are left out: a webhook cannot), at most
16,383 characters (a post's limit; cut and said so), `username` (and `icon_url`) from the settings, and
`props.closeloop` with the notification's key, kind, postmortem and item, for anyone searching the posts.
Mentions in the text (`@channel`, `@here`, `@all`, `@alice`, `<!channel>`) are neutralised, so an incident
title notifies nobody.

Mattermost answers `ok` and keeps no message id for a webhook post: the id is `mattermost:<hash of the key>`.
Errors: 429 (after Retry-After, or X-Ratelimit-Reset) and 5xx are retried; 400 (an invalid or deleted
webhook, a payload it cannot parse), 401, 403 (incoming webhooks turned off) and 404 are not, and name the
webhook only.
"""

from __future__ import annotations

from typing import Any

import httpx

from closeloop.integrations.base import Notification
from closeloop.integrations.chat import ChatWebhookChannel, cut, neutralise_mentions, retry_seconds, url_actions
from closeloop.integrations.mattermost.settings import MattermostSettings

MAX_TEXT = 16_383
CUT_MARK = "\n\n… _(cut: too long for Mattermost)_"


def _label(text: str) -> str:
    return text.replace("[", "(").replace("]", ")")


class MattermostChannel(ChatWebhookChannel):
    name = "mattermost"
    label = "Mattermost"
    settings: MattermostSettings

    def text(self, notification: Notification) -> str:
        subject = neutralise_mentions(" ".join(notification.subject.split()))
        links = " · ".join(f"[{_label(label)}]({url})" for label, url in url_actions(notification))
        tail = f"\n\n{links}" if links else ""
        head = f"#### {cut(subject, 500)}\n\n"
        body = neutralise_mentions(notification.body.strip("\n"))
        room = MAX_TEXT - len(head) - len(tail)
        if len(body) > room:
            body = body[: max(room - len(CUT_MARK), 0)] + CUT_MARK
        return head + body + tail

    def payload(self, notification: Notification) -> dict[str, Any]:
        n = notification
        post: dict[str, Any] = {"text": self.text(n), "props": {"closeloop": {
            "key": n.key, "kind": n.kind, "postmortem_id": n.postmortem_id, "item_id": n.item_id}}}
        if self.settings.username:
            post["username"] = self.settings.username
        if self.settings.icon_url:
            post["icon_url"] = self.settings.icon_url
        return post

    def retry_after(self, response: httpx.Response) -> float | None:
        """Retry-After, else X-Ratelimit-Reset (seconds until the limit resets; a value past an hour would be an
        epoch time some proxy put there, and is not taken)."""
        found = retry_seconds(response.headers.get("Retry-After"))
        if found is None:
            reset = retry_seconds(response.headers.get("X-Ratelimit-Reset"))
            found = reset if reset is not None and reset <= 3600 else None
        return found
