"""The generic webhook plugin's settings: `[notifiers.webhook]`. The receivers' URLs come only from
CLOSELOOP_WEBHOOK_URLS, the signing secret only from CLOSELOOP_WEBHOOK_SECRET."""

from __future__ import annotations

from typing import ClassVar

from closeloop.integrations.chat_settings import ChatWebhookSettings

ENV_WEBHOOKS = "CLOSELOOP_WEBHOOK_URLS"
ENV_SECRET = "CLOSELOOP_WEBHOOK_SECRET"


class WebhookSettings(ChatWebhookSettings):
    """`[notifiers.webhook]`: each notification as closeloop's own JSON document, POSTed to a receiver of yours
    (a bot, a pager bridge, a ticket queue), signed with HMAC-SHA256 (`X-Closeloop-Signature: sha256=<hex>`) with
    the secret from CLOSELOOP_WEBHOOK_SECRET."""

    env_webhooks: ClassVar[str] = ENV_WEBHOOKS
    section: ClassVar[str] = "notifiers.webhook"
