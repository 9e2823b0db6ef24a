"""Google Chat: a notification posted to a space by its incoming webhook (spaces.messages.create).

The message: `text` (the subject in bold, then the body; at most 4,096 characters, cut and said so), and, when
there are links, a `cardsV2` card with a button per link (the postmortem, the item, each action that opens a
page; actions that would call back are left out: a webhook cannot). Every message about one postmortem goes
to one thread: `thread.threadKey` is the postmortem id, with `messageReplyOption=
REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD` (the first message starts the thread; in a space without threads it is
a plain message). Mentions (`<users/all>`, `@all`) in the text are neutralised.

Each post carries `requestId=closeloop-<hash of the key>`: spaces.messages.create returns the message created
with an existing request id instead of creating another, so a retry after a crash between Google's answer and
closeloop's record does not post twice. The message id is the answer's `name` (`spaces/…/messages/…`).

Errors: 429 (RESOURCE_EXHAUSTED: a space takes about one webhook message a second) and 5xx are retried, after
Retry-After when given; 400 (INVALID_ARGUMENT), 401/403 (a key or token that is not valid, the webhook
removed from the space) and 404 are not, and name the webhook only.
"""

from __future__ import annotations

from typing import Any

import httpx

from closeloop.integrations.base import Notification
from closeloop.integrations.chat import ChatWebhookChannel, cut, key_hash, neutralise_mentions, url_actions
from closeloop.integrations.googlechat.settings import GoogleChatSettings

MAX_TEXT = 4096
MAX_BUTTONS = 6
CUT_MARK = "\n… _(cut: too long for Google Chat)_"


class GoogleChatChannel(ChatWebhookChannel):
    name = "googlechat"
    label = "Google Chat"
    settings: GoogleChatSettings

    def text(self, notification: Notification) -> str:
        subject = neutralise_mentions(" ".join(notification.subject.split()))
        text = f"*{cut(subject, 500)}*\n\n{neutralise_mentions(notification.body.strip())}"
        return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - len(CUT_MARK)] + CUT_MARK

    def payload(self, notification: Notification) -> dict[str, Any]:
        message: dict[str, Any] = {"text": self.text(notification)}
        buttons = [{"text": cut(label, 100), "onClick": {"openLink": {"url": url}}}
                   for label, url in url_actions(notification)[:MAX_BUTTONS]]
        if buttons:
            message["cardsV2"] = [{"cardId": "closeloop-links", "card": {
                "sections": [{"widgets": [{"buttonList": {"buttons": buttons}}]}]}}]
        if self.settings.thread_per_postmortem:
            message["thread"] = {"threadKey": notification.postmortem_id}
        return message

    def params(self, notification: Notification) -> dict[str, str]:
        params = {"requestId": f"closeloop-{key_hash(notification.key)}"}
        if self.settings.thread_per_postmortem:
            params["messageReplyOption"] = "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
        return params

    def message_id(self, notification: Notification, response: httpx.Response) -> str:
        try:
            name = response.json().get("name")
        except (ValueError, AttributeError):
            name = None
        return name if isinstance(name, str) and name else super().message_id(notification, response)
