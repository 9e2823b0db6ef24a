"""The Microsoft Teams plugin's settings: `[notifiers.teams]`. The webhook URLs (Workflows, "When a Teams
webhook request is received") come only from CLOSELOOP_TEAMS_WEBHOOKS."""

from __future__ import annotations

from typing import ClassVar

from closeloop.integrations.chat_settings import ChatWebhookSettings

ENV_WEBHOOKS = "CLOSELOOP_TEAMS_WEBHOOKS"


class TeamsSettings(ChatWebhookSettings):
    """`[notifiers.teams]`: notifications as Adaptive Cards posted to a Teams channel by a Workflows (Power
    Automate) webhook. Office 365 connectors (the old "Incoming Webhook" connector and its MessageCard) are
    retired: create the webhook with the Workflows app's template "Post to a channel when a webhook request is
    received"."""

    env_webhooks: ClassVar[str] = ENV_WEBHOOKS
    section: ClassVar[str] = "notifiers.teams"
