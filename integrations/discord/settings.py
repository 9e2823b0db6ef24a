"""The Discord plugin's settings: `[notifiers.discord]`. The webhooks' URLs come only from
CLOSELOOP_DISCORD_WEBHOOKS."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from closeloop.integrations.chat_settings import ChatWebhookSettings

ENV_WEBHOOKS = "CLOSELOOP_DISCORD_WEBHOOKS"


class DiscordSettings(ChatWebhookSettings):
    """`[notifiers.discord]`: notifications posted to a Discord channel by a webhook (Server Settings →
    Integrations → Webhooks)."""

    env_webhooks: ClassVar[str] = ENV_WEBHOOKS
    section: ClassVar[str] = "notifiers.discord"
    username: str | None = Field(default="closeloop", min_length=1, max_length=80,
                                 description="post as this name (default: the webhook's own)")
    avatar_url: str | None = Field(default=None, pattern=r"^https://", description="the picture the posts show")
