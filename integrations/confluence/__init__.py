"""The Confluence Cloud plugin: the published postmortem as a page of a Confluence space (`[publishers.confluence]`),
created once and updated in place on every publish (closeloop.integrations.confluence.publisher)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.confluence.settings import ENV_API_TOKEN, ConfluenceSettings
from closeloop.integrations.plugin import Plugin, PluginContext, register

if TYPE_CHECKING:
    from closeloop.integrations.base import Publisher


@register
class ConfluencePlugin(Plugin):
    name = "confluence"
    settings = {"publishers": ConfluenceSettings}
    secrets = (ENV_API_TOKEN,)

    def publishers(self, ctx: PluginContext) -> list[Publisher]:
        settings: ConfluenceSettings | None = ctx.settings("publishers", self.name)
        if settings is None:
            return []
        token = ctx.secrets.value(ENV_API_TOKEN)
        if not token:
            from closeloop.config import ConfigError

            raise ConfigError(f"publishers.confluence: {ENV_API_TOKEN} is not set: closeloop signs in to Confluence "
                              f"as {settings.email} with that API token (id.atlassian.com → Security → API tokens)")
        from closeloop.integrations.confluence.publisher import ConfluencePublisher

        return [ConfluencePublisher(settings, api_token=token)]
