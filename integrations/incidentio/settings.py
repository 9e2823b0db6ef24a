"""The incident.io plugin's settings: `[webhooks.incidentio]` (optional): which status categories start a
lifecycle, and the severity map. The webhook's signing secrets come only from the environment,
CLOSELOOP_INCIDENTIO_SECRETS (`whsec_...`, comma-separated during a rotation)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from closeloop.integrations.severities import IncidentWebhookSettings

ENV_WEBHOOK_SECRETS = "CLOSELOOP_INCIDENTIO_SECRETS"

# incident.io's documented status categories (IncidentStatusV2.category); "learning" is shown as "Post-incident".
Category = Literal["triage", "declined", "merged", "canceled", "live", "learning", "closed", "paused"]


def _start_on() -> list[Category]:
    return ["learning", "closed"]


class IncidentioWebhookSettings(IncidentWebhookSettings):
    """`[webhooks.incidentio]`. `start_on`: the status categories whose incidents start a lifecycle. The default,
    learning and closed, starts it as soon as the incident is over: at "Post-incident" for a team that uses
    incident.io's post-incident flow, at "Closed" for one that does not (the later event starts nothing new)."""

    DEFAULT_SEVERITIES: ClassVar[dict[str, str]] = {"Critical": "SEV1", "Major": "SEV2", "Minor": "SEV3"}

    start_on: list[Category] = Field(default_factory=_start_on, min_length=1,
                                     description="status categories that start a lifecycle")

    @field_validator("start_on", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return [c.strip().lower() if isinstance(c, str) else c for c in v] if isinstance(v, list) else v
