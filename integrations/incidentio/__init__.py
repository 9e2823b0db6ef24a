"""The incident.io plugin: the incident webhook (`POST /webhooks/incidentio`, Standard Webhooks signatures)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.incidentio.settings import ENV_WEBHOOK_SECRETS
from closeloop.integrations.plugin import Plugin, register

if TYPE_CHECKING:
    from closeloop.integrations.base import IncidentWebhook


@register
class IncidentioPlugin(Plugin):
    name = "incidentio"
    secrets = (ENV_WEBHOOK_SECRETS,)

    def incident_webhooks(self) -> list[IncidentWebhook]:
        from closeloop.integrations.incidentio.webhook import IncidentioWebhook

        return [IncidentioWebhook()]
