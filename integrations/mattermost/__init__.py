"""The Mattermost plugin: notifications posted to a room by its webhook (`[notifiers.mattermost]`), a channel
people can be reached on; the URLs from CLOSELOOP_MATTERMOST_WEBHOOKS."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.chat_settings import handle_problems, webhooks_from
from closeloop.integrations.mattermost.settings import ENV_WEBHOOKS, MattermostSettings
from closeloop.integrations.plugin import Plugin, PluginContext, register

if TYPE_CHECKING:
    from closeloop.config import Config
    from closeloop.integrations.base import Channel


@register
class MattermostPlugin(Plugin):
    name = "mattermost"
    settings = {"notifiers": MattermostSettings}
    secrets = (ENV_WEBHOOKS,)

    def channels(self, ctx: PluginContext) -> list[Channel]:
        settings: MattermostSettings | None = ctx.settings("notifiers", self.name)
        if settings is None:
            return []
        from closeloop.integrations.mattermost.channel import MattermostChannel

        return [MattermostChannel(settings, webhooks_from(ctx.secrets, ENV_WEBHOOKS))]

    def problems(self, config: Config) -> list[str]:
        return handle_problems(config, self.name)
