"""The Mattermost plugin's settings: `[notifiers.mattermost]`. The incoming webhooks' URLs come only from
CLOSELOOP_MATTERMOST_WEBHOOKS."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from closeloop.integrations.chat_settings import ChatWebhookSettings

ENV_WEBHOOKS = "CLOSELOOP_MATTERMOST_WEBHOOKS"


class MattermostSettings(ChatWebhookSettings):
    """`[notifiers.mattermost]`: notifications posted to a Mattermost channel by an incoming webhook."""

    env_webhooks: ClassVar[str] = ENV_WEBHOOKS
    section: ClassVar[str] = "notifiers.mattermost"
    username: str | None = Field(default="closeloop", max_length=64,
                                 description="post as this name (the server must allow integrations to override "
                                             "usernames; otherwise the webhook's own name shows)")
    icon_url: str | None = Field(default=None, pattern=r"^https://", description="the picture the posts show")
