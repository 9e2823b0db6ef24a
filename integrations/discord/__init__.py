"""The Discord plugin: notifications posted to a room by its webhook (`[notifiers.discord]`), a channel
people can be reached on; the URLs from CLOSELOOP_DISCORD_WEBHOOKS."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.chat_settings import handle_problems, webhooks_from
from closeloop.integrations.discord.settings import ENV_WEBHOOKS, DiscordSettings
from closeloop.integrations.plugin import Plugin, PluginContext, register

if TYPE_CHECKING:
    from closeloop.config import Config
    from closeloop.integrations.base import Channel


@register
class DiscordPlugin(Plugin):
    name = "discord"
    settings = {"notifiers": DiscordSettings}
    secrets = (ENV_WEBHOOKS,)

    def channels(self, ctx: PluginContext) -> list[Channel]:
        settings: DiscordSettings | None = ctx.settings("notifiers", self.name)
        if settings is None:
            return []
        from closeloop.integrations.discord.channel import DiscordChannel

        return [DiscordChannel(settings, webhooks_from(ctx.secrets, ENV_WEBHOOKS))]

    def problems(self, config: Config) -> list[str]:
        return handle_problems(config, self.name)
