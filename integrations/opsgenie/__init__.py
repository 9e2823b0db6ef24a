"""The Opsgenie plugin: the incident webhook (`POST /webhooks/opsgenie`, an alert's Close action)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.opsgenie.settings import ENV_TOKENS
from closeloop.integrations.plugin import Plugin, register

if TYPE_CHECKING:
    from closeloop.integrations.base import IncidentWebhook


@register
class OpsgeniePlugin(Plugin):
    name = "opsgenie"
    secrets = (ENV_TOKENS,)

    def incident_webhooks(self) -> list[IncidentWebhook]:
        from closeloop.integrations.opsgenie.webhook import OpsgenieWebhook

        return [OpsgenieWebhook()]
