"""Timeline source: a PagerDuty incident's log entries, through PagerDuty's REST API v2 with httpx.

`GET /incidents/{id}/log_entries` with offset pagination (`offset`, `limit`, `more`), authenticated with
`Authorization: Token token=<CLOSELOOP_PAGERDUTY_TOKEN>`. The incident id is the closeloop incident's
external_id when the incident came from PagerDuty (`source == "pagerduty"`); for any other incident the
source has nothing to say.

Log entry types become timeline kinds (`KINDS`): trigger -> detection, acknowledge -> acknowledge,
escalate / assign / delegate -> escalation, resolve -> resolution, annotate -> note (the note's text), ...;
the first four kinds are key moments.

Errors become `PagerDutyError` (an `HttpIntegrationError`): retryable for 5xx, 408, 429 (with Retry-After)
and connection failures; not for 401, 403, 404 and other 4xx.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from pydantic import Field

from closeloop.integrations.base import HttpIntegrationError, TimelineSource, report_progress
from closeloop.integrations.pagerduty.settings import PagerDutyTimelineSettings
from closeloop.integrations.urls import segment
from closeloop.models import Incident, TimelineEvent

# log entry type -> (timeline kind, key moment)
KINDS: dict[str, tuple[str, bool]] = {
    "trigger_log_entry": ("detection", True),
    "acknowledge_log_entry": ("acknowledge", True),
    "acknowledgement_log_entry": ("acknowledge", True),
    "unacknowledge_log_entry": ("unacknowledge", False),
    "escalate_log_entry": ("escalation", True),
    "assign_log_entry": ("escalation", False),
    "delegate_log_entry": ("escalation", False),
    "exhaust_escalation_path_log_entry": ("escalation", False),
    "repeat_escalation_path_log_entry": ("escalation", False),
    "resolve_log_entry": ("resolution", True),
    "annotate_log_entry": ("note", False),
    "notify_log_entry": ("notification", False),
    "snooze_log_entry": ("snooze", False),
    "urgency_change_log_entry": ("event", False),
    "reach_ack_limit_log_entry": ("event", False),
    "reach_trigger_limit_log_entry": ("event", False),
    "field_value_change_log_entry": ("event", False),
    "custom_field_value_change_log_entry": ("event", False),
}


class PagerDutyError(HttpIntegrationError):
    pass


class PagerDutyTimelineConfig(PagerDutyTimelineSettings):
    """`[timeline.pagerduty]` (PagerDutyTimelineSettings, whose defaults are the only ones) plus what comes from the
    environment and
    tuning the config file does not expose."""

    token: str = Field(default="", repr=False)



def _retry_after(response: httpx.Response) -> float | None:
    try:
        value = response.headers.get("Retry-After")
        return float(value) if value is not None else None
    except ValueError:
        return None


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return str(error.get("message") or "")[:300]
    except (ValueError, AttributeError):
        return response.text[:300]


class PagerDutyTimelineSource(TimelineSource):
    name = "pagerduty"

    def __init__(self, config: PagerDutyTimelineConfig) -> None:
        self.config = config

    def _get(self, client: httpx.Client, path: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            response = client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise PagerDutyError(f"PagerDuty GET {path}: {type(exc).__name__}: {exc}"[:1000], retryable=True) from exc
        if response.status_code >= 400:
            status = response.status_code
            raise PagerDutyError(f"PagerDuty GET {path}: HTTP {status}: {_message(response)}",
                                 retryable=PagerDutyError.is_retryable(status), status=status,
                                 retry_after=_retry_after(response))
        try:
            body = response.json()
        except ValueError:
            raise PagerDutyError(f"PagerDuty GET {path}: the answer is not JSON", retryable=True) from None
        if not isinstance(body, dict) or not isinstance(body.get("log_entries"), list):
            raise PagerDutyError(f"PagerDuty GET {path}: no log_entries in the answer", retryable=True)
        return body

    def log_entries(self, incident_id: str) -> list[dict[str, Any]]:
        """Every log entry of the incident, following `more` page by page."""
        headers = {"Authorization": f"Token token={self.config.token}",
                   "Accept": "application/vnd.pagerduty+json;version=2"}
        path = f"/incidents/{segment(incident_id)}/log_entries"
        entries: list[dict[str, Any]] = []
        with httpx.Client(base_url=self.config.url.rstrip("/"), headers=headers,
                          timeout=self.config.timeout) as client:
            offset = 0
            for _ in range(self.config.max_pages):
                page = self._get(client, path, {"offset": offset, "limit": self.config.page_size,
                                                "is_overview": "false"})
                got = page["log_entries"]
                report_progress(offset)
                entries.extend(e for e in got if isinstance(e, dict))
                if not page.get("more") or not got:
                    break
                offset += len(got)
        return entries

    def fetch(self, incident: Incident) -> list[TimelineEvent]:
        if incident.source != "pagerduty":
            return []
        return [e for e in (self.event(entry) for entry in self.log_entries(incident.external_id)) if e]

    @staticmethod
    def event(entry: dict[str, Any]) -> TimelineEvent | None:
        """One log entry as a timeline event (None when it has no time)."""
        try:
            at = datetime.fromisoformat(str(entry["created_at"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            return None
        kind, key = KINDS.get(str(entry.get("type")), ("event", False))
        agent_value = entry.get("agent")
        agent: dict[str, Any] = agent_value if isinstance(agent_value, dict) else {}
        summary = str(entry.get("summary") or entry.get("type") or "log entry").strip()
        channel = entry.get("channel")
        note = entry.get("note") or (channel.get("summary") if kind == "note" and isinstance(channel, dict) else None)
        text = f"{summary}: {note}" if note and str(note) not in summary else summary
        return TimelineEvent(at=at, source="pagerduty", kind=kind, text=" ".join(text.split())[:2000],
                             actor=agent.get("summary") if agent.get("type") == "user_reference" else None,
                             url=entry.get("html_url") or None, key_moment=key)
