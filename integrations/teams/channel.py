"""Microsoft Teams: a notification as an Adaptive Card (1.4) posted to a channel by a Workflows webhook.

Office 365 connectors (the "Incoming Webhook" connector and its MessageCard format) are retired; Teams now
takes webhooks through the Workflows app (Power Automate), whose trigger "When a Teams webhook request is
received" accepts a message with Adaptive Card attachments:

    {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                         "contentUrl": null, "content": {<AdaptiveCard 1.4>}}]}

The card: the subject as a heading, the body a TextBlock per line (Teams joins a TextBlock's single line
breaks), and an `Action.OpenUrl` button per link (the postmortem, the item, each action that opens a page;
actions that would need to call back are left out: a webhook cannot). Mentions are neutralised (a card
mentions only through `msteams.entities`, which closeloop never sends, but `<at>` and `@channel` in a title
are broken all the same). The whole payload is kept under Teams' message size (~28 KB): the body is cut,
said so.

The workflow answers 202 Accepted with no body: the message id is `teams:<hash of the key>`. Errors: 429 (with
Retry-After) and 5xx are retried; 400 (a card the flow refuses), 401/403 (the URL's signature), 404 (the flow
was deleted or turned off) are not, and name the webhook only.
"""

from __future__ import annotations

import json
from typing import Any

from closeloop.integrations.base import Notification
from closeloop.integrations.chat import ChatWebhookChannel, cut, neutralise_mentions, url_actions

MAX_BYTES = 28_000  # Teams refuses a message past about 28 KB
MAX_ACTIONS = 6  # buttons Teams shows in a row before "..." hides the rest
CUT_MARK = "… (cut: too long for Teams)"


class TeamsChannel(ChatWebhookChannel):
    name = "teams"
    label = "Microsoft Teams"

    def card(self, notification: Notification, body: str) -> dict[str, Any]:
        n = notification
        blocks: list[dict[str, Any]] = [{"type": "TextBlock", "text": neutralise_mentions(cut(n.subject, 500)),
                                         "size": "Medium", "weight": "Bolder", "wrap": True}]
        gap = True
        for line in body.split("\n"):
            if not line.strip():
                gap = True
                continue
            blocks.append({"type": "TextBlock", "text": line, "wrap": True,
                           "spacing": "Medium" if gap else "None"})
            gap = False
        actions = [{"type": "Action.OpenUrl", "title": cut(label, 100), "url": url}
                   for label, url in url_actions(n)[:MAX_ACTIONS]]
        card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                                "type": "AdaptiveCard", "version": "1.4", "body": blocks,
                                "msteams": {"width": "Full"}}
        if actions:
            card["actions"] = actions
        return card

    def payload(self, notification: Notification) -> dict[str, Any]:
        body = neutralise_mentions(notification.body.strip("\n"))
        while True:
            message = {"type": "message", "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                "content": self.card(notification, body)}]}
            size = len(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode())
            if size <= MAX_BYTES or not body:
                return message
            # over by `size - MAX_BYTES` bytes: cut at least that many characters (a character is 1+ bytes,
            # and JSON escapes make some longer), and say so
            keep = max(len(body) - (size - MAX_BYTES) - len(CUT_MARK.encode()) - 64, 0)
            body = body[:keep] + CUT_MARK if keep else ""
