"""The Slack plugin: the incident channel's messages as timeline events (`[timeline.slack]`), reactions
marking the key moments."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.plugin import Plugin, PluginContext, register
from closeloop.integrations.slack.settings import ENV_TOKEN, SlackTimelineSettings

if TYPE_CHECKING:
    from closeloop.integrations.base import TimelineSource


@register
class SlackPlugin(Plugin):
    name = "slack"
    settings = {"timeline": SlackTimelineSettings}
    secrets = (ENV_TOKEN,)

    def timeline_sources(self, ctx: PluginContext) -> list[TimelineSource]:
        settings: SlackTimelineSettings | None = ctx.settings("timeline", self.name)
        if settings is None:
            return []
        from closeloop.integrations.slack.timeline import SlackTimelineConfig, SlackTimelineSource

        return [SlackTimelineSource(SlackTimelineConfig(**settings.model_dump(), token=ctx.secrets.value(ENV_TOKEN)),
                                    people=dict(ctx.directory))]
