"""The Microsoft Teams plugin: notifications posted to a room by its webhook (`[notifiers.teams]`), a channel
people can be reached on; the URLs from CLOSELOOP_TEAMS_WEBHOOKS."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.chat_settings import handle_problems, webhooks_from
from closeloop.integrations.plugin import Plugin, PluginContext, register
from closeloop.integrations.teams.settings import ENV_WEBHOOKS, TeamsSettings

if TYPE_CHECKING:
    from closeloop.config import Config
    from closeloop.integrations.base import Channel


@register
class MicrosoftTeamsPlugin(Plugin):
    name = "teams"
    settings = {"notifiers": TeamsSettings}
    secrets = (ENV_WEBHOOKS,)

    def channels(self, ctx: PluginContext) -> list[Channel]:
        settings: TeamsSettings | None = ctx.settings("notifiers", self.name)
        if settings is None:
            return []
        from closeloop.integrations.teams.channel import TeamsChannel

        return [TeamsChannel(settings, webhooks_from(ctx.secrets, ENV_WEBHOOKS))]

    def problems(self, config: Config) -> list[str]:
        return handle_problems(config, self.name)
