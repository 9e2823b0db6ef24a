"""The Slack plugin: the incident channel's messages as timeline events (`[timeline.slack]`), reactions
marking the key moments; notifications as direct messages (`[notifiers.slack]`), a channel people can be
reached on; and the interactivity endpoint (`POST /webhooks/slack/interactions`), where the buttons of those
messages are pressed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.plugin import Plugin, PluginContext, register
from closeloop.integrations.slack.settings import (
    ENV_SIGNING_SECRET,
    ENV_TOKEN,
    SlackNotifierSettings,
    SlackTimelineSettings,
)

if TYPE_CHECKING:
    from closeloop.integrations.base import Channel, InteractionWebhook, TimelineSource


@register
class SlackPlugin(Plugin):
    name = "slack"
    settings = {"timeline": SlackTimelineSettings, "notifiers": SlackNotifierSettings}
    secrets = (ENV_TOKEN, ENV_SIGNING_SECRET)

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

    def interaction_webhooks(self, ctx: PluginContext) -> list[InteractionWebhook]:
        from closeloop.integrations.slack.interactions import SlackInteractionWebhook

        settings: SlackNotifierSettings | None = ctx.settings("notifiers", self.name)
        return [SlackInteractionWebhook(settings or SlackNotifierSettings(), ctx.secrets.value(ENV_TOKEN),
                                        ctx.directory)]
