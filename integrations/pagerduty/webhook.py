"""PagerDuty's incident webhook (Webhooks v3): `POST /webhooks/pagerduty`, signed `X-PagerDuty-Signature:
v1=<hex HMAC-SHA256 of the raw body>` with one of CLOSELOOP_PAGERDUTY_SECRETS (several signatures during
PagerDuty's rotation, several secrets during ours; constant-time compares). `incident.resolved` starts the
incident's lifecycle (source "pagerduty", external_id = the incident id); other events answer 202 ignored."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from closeloop.integrations.base import IncidentWebhook, WebhookContext
from closeloop.integrations.pagerduty.settings import ENV_WEBHOOK_SECRETS, PagerDutyWebhookSettings
from closeloop.integrations.severities import SeverityMap
from closeloop.models import Incident
from closeloop.web.requests import (
    MAX_SIGNATURES,
    Reject,
    field,
    incident_or_reject,
    json_object,
    read_body,
    str_field,
)

log = structlog.get_logger("closeloop.web")


def pagerduty_signature_ok(body: bytes, header: str, secrets: tuple[str, ...]) -> bool:
    """True when one of the header's `v1=` signatures is the HMAC-SHA256 (hex) of the raw body under one of
    the secrets. Several signatures (PagerDuty's rotation) and several secrets (ours) are both allowed."""
    given = [part.strip()[3:].lower().encode("utf-8", "surrogateescape")
             for part in header.split(",")[:MAX_SIGNATURES] if part.strip().startswith("v1=")]
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
        for signature in given:
            matched |= hmac.compare_digest(expected, signature)
    return matched


MAX_BODY_BYTES = 256 * 1024  # "All webhooks with a final size greater than 256 KB are always dropped" (v3 docs)


def _summary(obj: Any) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("summary"), str) and obj["summary"].strip():
        return str(obj["summary"]).strip()
    return None


def _default_maps() -> tuple[SeverityMap, SeverityMap]:
    defaults = PagerDutyWebhookSettings()
    return SeverityMap("pagerduty", defaults.severities), SeverityMap("pagerduty", defaults.urgencies)


def pagerduty_severity(data: dict[str, Any], priorities: SeverityMap | None = None,
                       urgencies: SeverityMap | None = None) -> tuple[str, str | None]:
    """(severity, the unmapped name): the priority's name through `[webhooks.pagerduty] severities` (P1 -> SEV1;
    an account's own names such as "Critical" when mapped); else, and for an unmapped priority, the urgency
    through `urgencies` (high -> SEV2, low -> SEV3). An unmapped priority is flagged."""
    if priorities is None or urgencies is None:
        priorities, urgencies = _default_maps()
    priority = _summary(data.get("priority"))
    if priority and priorities.lookup(priority) is not None:
        return priorities.resolve(priority)
    urgency = data.get("urgency")
    by_urgency, unmapped_urgency = urgencies.resolve(urgency if isinstance(urgency, str) else None)
    return priorities.resolve(priority, by_urgency) if priority else (by_urgency, unmapped_urgency)


# Where each Incident field comes from in the v3 envelope, so a validation error names the sender's field.
PD_FIELDS = {
    "external_id": "event.data.id", "title": "event.data.title", "severity": "event.data.priority.summary",
    "services": "event.data.service.summary", "links": "event.data.html_url",
    "started_at": "event.data.created_at", "resolved_at": "event.occurred_at",
    "dedup_key": "event.data.incident_key", "unmapped_severity": "event.data.priority.summary",
}


def pagerduty_incident(envelope: dict[str, Any], priorities: SeverityMap | None = None,
                       urgencies: SeverityMap | None = None) -> Incident:
    """The closeloop Incident of an `incident.resolved` v3 envelope. Reject(422) when a needed field is
    missing or invalid."""
    event = envelope["event"]
    data = field(envelope, "event.data")
    if not isinstance(data, dict):
        raise Reject(422, "field event.data must be an object")
    external_id = str_field(envelope, "event.data.id")
    title = str_field(envelope, "event.data.title")
    fields: dict[str, Any] = {
        "source": "pagerduty",
        "external_id": external_id,
        "title": " ".join(title.split())[:500],
        "resolved_at": event.get("occurred_at") or datetime.now(UTC),
    }
    fields["severity"], fields["unmapped_severity"] = pagerduty_severity(data, priorities, urgencies)
    service = _summary(data.get("service"))
    if service:
        fields["services"] = [service[:200]]
    if isinstance(data.get("html_url"), str) and data["html_url"]:
        number = data.get("number")
        label = f"PagerDuty incident #{number}" if type(number) is int else "PagerDuty incident"
        fields["links"] = [{"title": label, "url": data["html_url"]}]
    if data.get("created_at") is not None:
        fields["started_at"] = data["created_at"]
    if isinstance(data.get("incident_key"), str) and data["incident_key"]:
        fields["dedup_key"] = data["incident_key"]
    return incident_or_reject(fields, PD_FIELDS)


class PagerDutyWebhook(IncidentWebhook):
    path = "pagerduty"
    secret_names = (ENV_WEBHOOK_SECRETS,)
    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, *, priorities: SeverityMap | None = None, urgencies: SeverityMap | None = None) -> None:
        self.priorities, self.urgencies = priorities, urgencies

    async def handle(self, request: Request, ctx: WebhookContext) -> Response:
        body = await read_body(request, ctx.max_body_bytes)
        secrets = ctx.secrets.values(ENV_WEBHOOK_SECRETS)
        if not secrets:
            raise Reject(401, f"no PagerDuty webhook secrets are configured on this server (set {ENV_WEBHOOK_SECRETS})")
        header = request.headers.get("x-pagerduty-signature")
        if not header:
            raise Reject(401, "missing X-PagerDuty-Signature")
        if not pagerduty_signature_ok(body, header, secrets):
            log.warning("pagerduty_bad_signature", webhook_id=request.headers.get("x-webhook-id"))
            raise Reject(401, "invalid X-PagerDuty-Signature")
        envelope = json_object(body)
        if not isinstance(field(envelope, "event"), dict):
            raise Reject(422, "field event must be an object")
        event_type = str_field(envelope, "event.event_type")[:100]
        if event_type != "incident.resolved":
            log.info("pagerduty_event_ignored", event_type=event_type, webhook_id=request.headers.get("x-webhook-id"))
            return JSONResponse({"ignored": event_type}, status_code=202)
        return await ctx.start(pagerduty_incident(envelope, self.priorities, self.urgencies), "pagerduty")
