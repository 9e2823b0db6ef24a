"""The incident.io plugin: the incident webhook (`POST /webhooks/incidentio`, Standard Webhooks signatures) and its
optional `[webhooks.incidentio]` section (status categories that start a lifecycle, severity map)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.incidentio.settings import ENV_WEBHOOK_SECRETS, IncidentioWebhookSettings
from closeloop.integrations.plugin import Plugin, PluginContext, register
from closeloop.integrations.severities import webhook_settings

if TYPE_CHECKING:
    from closeloop.config import Config
    from closeloop.integrations.base import IncidentWebhook


@register
class IncidentioPlugin(Plugin):
    name = "incidentio"
    settings = {"webhooks": IncidentioWebhookSettings}
    secrets = (ENV_WEBHOOK_SECRETS,)

    def incident_webhooks(self, ctx: PluginContext) -> list[IncidentWebhook]:
        from closeloop.integrations.incidentio.webhook import IncidentioWebhook

        settings = webhook_settings(ctx.config, self.name, IncidentioWebhookSettings)
        return [IncidentioWebhook(start_on=settings.start_on, severities=settings.severity_map(self.name, ctx.config))]

    def problems(self, config: Config) -> list[str]:
        return webhook_settings(config, self.name, IncidentioWebhookSettings).problems(self.name, config)
