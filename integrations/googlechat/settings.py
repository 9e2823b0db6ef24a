"""The Google Chat plugin's settings: `[notifiers.googlechat]`. The space's webhook URLs come only from
CLOSELOOP_GOOGLECHAT_WEBHOOKS."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from closeloop.integrations.chat_settings import ChatWebhookSettings

ENV_WEBHOOKS = "CLOSELOOP_GOOGLECHAT_WEBHOOKS"


class GoogleChatSettings(ChatWebhookSettings):
    """`[notifiers.googlechat]`: notifications posted to a Google Chat space by its incoming webhook, one thread
    per postmortem."""

    env_webhooks: ClassVar[str] = ENV_WEBHOOKS
    section: ClassVar[str] = "notifiers.googlechat"
    thread_per_postmortem: bool = Field(default=True, description="reply in one thread per postmortem (the thread "
                                                                   "key is the postmortem id)")
