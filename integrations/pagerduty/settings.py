"""The PagerDuty plugin's settings: `[timeline.pagerduty]`. The REST API token comes only from
CLOSELOOP_PAGERDUTY_TOKEN, the webhook's signing secrets from CLOSELOOP_PAGERDUTY_SECRETS (comma-separated)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

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
