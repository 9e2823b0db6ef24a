"""The generic webhook: each notification as closeloop's own JSON document, POSTed to a receiver of yours.

The body (UTF-8 JSON):

    {"key": ..., "kind": ..., "recipient": ..., "subject": ..., "body": ..., "links": {"postmortem": ...},
     "actions": [{"action": ..., "label": ..., "url": ...}], "postmortem_id": ..., "item_id": ..., "at": ...}

`actions` are those that open a page (a receiver cannot call back: there is no endpoint for it); `at` is
ISO 8601. Nothing is escaped or cut: the receiver renders it. Headers:
- `X-Closeloop-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body with the secret from
  CLOSELOOP_WEBHOOK_SECRET (its first value: during a rotation put the new one first, and let receivers accept
  both). Receivers compute the same over the raw body and compare in constant time. Without a secret nothing
  is sent (the delivery fails for good, and the operator is told).
- `X-Closeloop-Kind`, and `Idempotency-Key`: the notification's key. A retry after a crash between the
  receiver's answer and closeloop's record sends the same key again: receivers that keep the keys they took
  show it once.

The message id is the answer's `id` when it is JSON with one, else `webhook:<hash of the key>`. Errors: 408,
429 (after Retry-After) and 5xx are retried; other 4xx are not, and name the webhook only.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx

from closeloop.integrations.base import IntegrationError, Notification
from closeloop.integrations.chat import ChatWebhookChannel, key_hash
from closeloop.integrations.webhook.settings import ENV_SECRET, WebhookSettings

SIGNATURE_HEADER = "X-Closeloop-Signature"


def signature(secret: str, body: bytes) -> str:
    """The `X-Closeloop-Signature` value of `body`: `sha256=<hex HMAC-SHA256>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: the header matches the body's signature (constant-time)."""
    return hmac.compare_digest(signature(secret, body), header.strip())


class WebhookChannel(ChatWebhookChannel):
    name = "webhook"
    label = "Webhook"
    settings: WebhookSettings

    def __init__(self, settings: WebhookSettings, webhooks: dict[str, str], *, secrets: tuple[str, ...] = (),
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(settings, webhooks, transport=transport)
        self._secret = secrets[0] if secrets else ""

    def payload(self, notification: Notification) -> dict[str, Any]:
        n = notification
        return {"key": n.key, "kind": n.kind, "recipient": n.recipient, "subject": n.subject, "body": n.body,
                "links": dict(n.links),
                "actions": [{"action": a.action, "label": a.label, "url": a.url} for a in n.actions if a.url],
                "postmortem_id": n.postmortem_id, "item_id": n.item_id, "at": n.at.isoformat()}

    def headers(self, notification: Notification, body: bytes) -> dict[str, str]:
        if not self._secret:
            raise IntegrationError(f"Webhook: {ENV_SECRET} is not set: closeloop signs every delivery, and sends "
                                   "nothing unsigned", retryable=False)
        return {SIGNATURE_HEADER: signature(self._secret, body), "X-Closeloop-Kind": notification.kind,
                "Idempotency-Key": notification.key if notification.key.isascii() else key_hash(notification.key)}

    def message_id(self, notification: Notification, response: httpx.Response) -> str:
        try:
            found = response.json().get("id")
        except (ValueError, AttributeError):
            found = None
        return str(found) if isinstance(found, str | int) and found else super().message_id(notification, response)
