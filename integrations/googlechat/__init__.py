"""The Google Chat plugin: notifications posted to a room by its webhook (`[notifiers.googlechat]`), a channel
people can be reached on; the URLs from CLOSELOOP_GOOGLECHAT_WEBHOOKS."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.chat_settings import handle_problems, webhooks_from
from closeloop.integrations.googlechat.settings import ENV_WEBHOOKS, GoogleChatSettings
from closeloop.integrations.plugin import Plugin, PluginContext, register

if TYPE_CHECKING:
    from closeloop.config import Config
    from closeloop.integrations.base import Channel


@register
class GoogleChatPlugin(Plugin):
    name = "googlechat"
    settings = {"notifiers": GoogleChatSettings}
    secrets = (ENV_WEBHOOKS,)

    def channels(self, ctx: PluginContext) -> list[Channel]:
        settings: GoogleChatSettings | None = ctx.settings("notifiers", self.name)
        if settings is None:
            return []
        from closeloop.integrations.googlechat.channel import GoogleChatChannel

        return [GoogleChatChannel(settings, webhooks_from(ctx.secrets, ENV_WEBHOOKS))]

    def problems(self, config: Config) -> list[str]:
        return handle_problems(config, self.name)
