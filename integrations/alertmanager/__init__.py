"""The Alertmanager plugin: the incident webhook (`POST /webhooks/alertmanager`: a resolved alert group starts
a lifecycle, and its alerts are stored for the timeline) and the `alertmanager` timeline source that reads
them back. The source needs no section; `[timeline.alertmanager]` tunes it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.alertmanager.settings import (
    ENV_BASIC,
    ENV_TOKENS,
    AlertmanagerTimelineSettings,
    AlertmanagerWebhookSettings,
)
from closeloop.integrations.plugin import Plugin, PluginContext, register
from closeloop.integrations.severities import webhook_settings

if TYPE_CHECKING:
    from closeloop.config import Config
    from closeloop.integrations.base import IncidentWebhook, TimelineSource


@register
class AlertmanagerPlugin(Plugin):
    name = "alertmanager"
    settings = {"timeline": AlertmanagerTimelineSettings, "webhooks": AlertmanagerWebhookSettings}
    secrets = (ENV_TOKENS, ENV_BASIC)
    builtin_timeline_sources = ("alertmanager",)

    def timeline_sources(self, ctx: PluginContext) -> list[TimelineSource]:
        from closeloop.integrations.alertmanager.timeline import AlertmanagerSource

        settings: AlertmanagerTimelineSettings = (ctx.settings("timeline", self.name)
                                                  or AlertmanagerTimelineSettings())
        return [AlertmanagerSource(ctx.require_store(), key_moments=settings.key_moments)]

    def incident_webhooks(self, ctx: PluginContext) -> list[IncidentWebhook]:
        from closeloop.integrations.alertmanager.webhook import AlertmanagerWebhook

        settings = webhook_settings(ctx.config, self.name, AlertmanagerWebhookSettings)
        return [AlertmanagerWebhook(severities=settings.severity_map(self.name, ctx.config))]

    def problems(self, config: Config) -> list[str]:
        return webhook_settings(config, self.name, AlertmanagerWebhookSettings).problems(self.name, config)
