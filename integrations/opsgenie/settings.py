"""The Opsgenie plugin's settings: `[webhooks.opsgenie]` (optional: the severity map). The webhook's tokens come only
from the environment, CLOSELOOP_OPSGENIE_TOKENS (comma-separated)."""

from __future__ import annotations

from typing import ClassVar

from closeloop.integrations.severities import IncidentWebhookSettings

ENV_TOKENS = "CLOSELOOP_OPSGENIE_TOKENS"


class OpsgenieWebhookSettings(IncidentWebhookSettings):
    """`[webhooks.opsgenie]`: `severities` maps the alert's priority (P1..P5; P5, informational, as SEV4)."""

    DEFAULT_SEVERITIES: ClassVar[dict[str, str]] = {"P1": "SEV1", "P2": "SEV2", "P3": "SEV3", "P4": "SEV4",
                                                    "P5": "SEV4"}
