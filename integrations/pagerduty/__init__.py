"""The PagerDuty plugin: the incident webhook (`POST /webhooks/pagerduty`, `incident.resolved` starts a
lifecycle) and an incident's log entries as timeline events (`[timeline.pagerduty]`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.pagerduty.settings import (
    ENV_TOKEN,
    ENV_WEBHOOK_SECRETS,
    PagerDutyTimelineSettings,
    PagerDutyWebhookSettings,
)
from closeloop.integrations.plugin import Plugin, PluginContext, register
from closeloop.integrations.severities import SeverityMap, known_severities, webhook_settings

if TYPE_CHECKING:
    from closeloop.config import Config
    from closeloop.integrations.base import IncidentWebhook, TimelineSource


@register
class PagerDutyPlugin(Plugin):
    name = "pagerduty"
    settings = {"timeline": PagerDutyTimelineSettings, "webhooks": PagerDutyWebhookSettings}
    secrets = (ENV_TOKEN, ENV_WEBHOOK_SECRETS)

    def timeline_sources(self, ctx: PluginContext) -> list[TimelineSource]:
        settings: PagerDutyTimelineSettings | None = ctx.settings("timeline", self.name)
        if settings is None:
            return []
        from closeloop.integrations.pagerduty.timeline import PagerDutyTimelineConfig, PagerDutyTimelineSource

        return [PagerDutyTimelineSource(PagerDutyTimelineConfig(**settings.model_dump(),
                                                                token=ctx.secrets.value(ENV_TOKEN)))]

    def incident_webhooks(self, ctx: PluginContext) -> list[IncidentWebhook]:
        from closeloop.integrations.pagerduty.webhook import PagerDutyWebhook

        settings = webhook_settings(ctx.config, self.name, PagerDutyWebhookSettings)
        known = frozenset(known_severities(ctx.config))
        return [PagerDutyWebhook(priorities=settings.severity_map(self.name, ctx.config),
                                 urgencies=SeverityMap(self.name, settings.urgencies, known))]

    def problems(self, config: Config) -> list[str]:
        return webhook_settings(config, self.name, PagerDutyWebhookSettings).problems(self.name, config)
