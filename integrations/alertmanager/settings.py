"""The Alertmanager plugin's settings: `[timeline.alertmanager]` and `[webhooks.alertmanager]` (the severity
map), both optional. The webhook's credentials come
only from the environment: CLOSELOOP_ALERTMANAGER_TOKENS (bearer) or CLOSELOOP_ALERTMANAGER_BASIC
(`user:password` pairs), comma-separated."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from closeloop.integrations.severities import IncidentWebhookSettings

ENV_TOKENS = "CLOSELOOP_ALERTMANAGER_TOKENS"
ENV_BASIC = "CLOSELOOP_ALERTMANAGER_BASIC"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertmanagerTimelineSettings(_Strict):
    """`[timeline.alertmanager]`: the alerts that the Alertmanager webhook stored for the incident."""

    key_moments: bool = Field(default=True, description="the first firing alert marks the detection")


class AlertmanagerWebhookSettings(IncidentWebhookSettings):
    """`[webhooks.alertmanager]`: `severities` maps the alerts' `severity` label."""

    DEFAULT_SEVERITIES: ClassVar[dict[str, str]] = {"critical": "SEV1", "high": "SEV2", "error": "SEV2",
                                                    "warning": "SEV3", "info": "SEV4"}
