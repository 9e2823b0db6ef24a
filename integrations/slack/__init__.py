"""The Slack plugin: the incident channel's messages as timeline events (`[timeline.slack]`), reactions
marking the key moments; and notifications as direct messages (`[notifiers.slack]`), a channel people can be
reached on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.plugin import Plugin, PluginContext, register
from closeloop.integrations.slack.settings import ENV_TOKEN, SlackNotifierSettings, SlackTimelineSettings

if TYPE_CHECKING:
    from closeloop.integrations.base import Channel, TimelineSource


@register
class SlackPlugin(Plugin):
    name = "slack"
    settings = {"timeline": SlackTimelineSettings, "notifiers": SlackNotifierSettings}
    secrets = (ENV_TOKEN,)

    def timeline_sources(self, ctx: PluginContext) -> list[TimelineSource]:
        settings: SlackTimelineSettings | None = ctx.settings("timeline", self.name)
        if settings is None:
            return []
        from closeloop.integrations.slack.timeline import SlackTimelineConfig, SlackTimelineSource

        return [SlackTimelineSource(SlackTimelineConfig(**settings.model_dump(), token=ctx.secrets.value(ENV_TOKEN)),
                                    people=dict(ctx.directory))]

    def channels(self, ctx: PluginContext) -> list[Channel]:
        settings: SlackNotifierSettings | None = ctx.settings("notifiers", self.name)
        if settings is None:
            return []
        from closeloop.integrations.slack.channel import SlackChannel

        return [SlackChannel(settings, ctx.secrets.value(ENV_TOKEN))]
