"""The Opsgenie plugin: the incident webhook (`POST /webhooks/opsgenie`, an alert's Close action) and its optional
`[webhooks.opsgenie]` section (severity map)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.opsgenie.settings import ENV_TOKENS, OpsgenieWebhookSettings
from closeloop.integrations.plugin import Plugin, PluginContext, register
from closeloop.integrations.severities import webhook_settings

if TYPE_CHECKING:
    from closeloop.config import Config
    from closeloop.integrations.base import IncidentWebhook


@register
class OpsgeniePlugin(Plugin):
    name = "opsgenie"
    settings = {"webhooks": OpsgenieWebhookSettings}
    secrets = (ENV_TOKENS,)

    def incident_webhooks(self, ctx: PluginContext) -> list[IncidentWebhook]:
        from closeloop.integrations.opsgenie.webhook import OpsgenieWebhook

        settings = webhook_settings(ctx.config, self.name, OpsgenieWebhookSettings)
        return [OpsgenieWebhook(severities=settings.severity_map(self.name, ctx.config))]

    def problems(self, config: Config) -> list[str]:
        return webhook_settings(config, self.name, OpsgenieWebhookSettings).problems(self.name, config)
