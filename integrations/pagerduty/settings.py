"""The PagerDuty plugin's settings: `[timeline.pagerduty]` and `[webhooks.pagerduty]` (severity map). The REST API
token comes only from CLOSELOOP_PAGERDUTY_TOKEN, the webhook's signing secrets from CLOSELOOP_PAGERDUTY_SECRETS
(comma-separated)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from closeloop.integrations.severities import IncidentWebhookSettings, known_severities, merged, table_problems

if TYPE_CHECKING:
    from closeloop.config import Config

ENV_TOKEN = "CLOSELOOP_PAGERDUTY_TOKEN"
ENV_WEBHOOK_SECRETS = "CLOSELOOP_PAGERDUTY_SECRETS"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PagerDutyTimelineSettings(_Strict):
    """`[timeline.pagerduty]`: an incident's log entries (`GET /incidents/{id}/log_entries`). The REST API
    token comes only from CLOSELOOP_PAGERDUTY_TOKEN."""

    url: str = "https://api.pagerduty.com"
    page_size: int = Field(default=100, ge=1, le=1000, description="`limit` per request")
    max_pages: int = Field(default=50, ge=1)
    timeout: float = Field(default=30.0, gt=0)


DEFAULT_URGENCIES = {"high": "SEV2", "low": "SEV3"}


class PagerDutyWebhookSettings(IncidentWebhookSettings):
    """`[webhooks.pagerduty]`: `severities` maps the incident's priority (its name: P1..P5, or an account's own
    names such as "Critical"); `urgencies` maps its urgency, for an incident without a priority."""

    DEFAULT_SEVERITIES: ClassVar[dict[str, str]] = {f"P{n}": f"SEV{n}" for n in range(1, 6)}

    urgencies: dict[str, str] = Field(default_factory=dict, validate_default=True,
                                      description="urgency (high, low) -> closeloop's severity, without a priority")

    @field_validator("urgencies")
    @classmethod
    def _urgencies(cls, v: dict[str, str]) -> dict[str, str]:
        return merged(DEFAULT_URGENCIES, v)

    def problems(self, source: str, config: Config) -> list[str]:
        return [*super().problems(source, config),
                *table_problems(f"webhooks.{source}.urgencies", self.urgencies, known_severities(config))]
