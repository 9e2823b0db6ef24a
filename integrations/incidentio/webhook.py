"""incident.io's webhook: `POST /webhooks/incidentio`, Standard Webhooks (Svix) signatures: `webhook-id`,
`webhook-timestamp` (unix seconds, at most 5 minutes away from now either way) and `webhook-signature`
(space-separated `v1,<base64 HMAC-SHA256>`) over `"{id}.{timestamp}.{body}"`, keyed by the base64 part of
`whsec_...` secrets (CLOSELOOP_INCIDENTIO_SECRETS). A `public_incident.incident_*` event (every documented shape)
whose incident's status category is one of `[webhooks.incidentio] start_on` (default learning, closed) starts a
lifecycle (source "incidentio", external_id = incident id, severity through the severity map); other events and
categories, and private incidents' events (`{id}` only), answer 202 ignored."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from closeloop.integrations.base import IncidentWebhook, WebhookContext
from closeloop.models import Incident
from closeloop.web.requests import (
    MAX_SIGNATURES,
    Reject,
    incident_or_reject,
    json_object,
    read_body,
    str_field,
    title_text,
)

log = structlog.get_logger("closeloop.web")


from closeloop.integrations.incidentio.settings import ENV_WEBHOOK_SECRETS, IncidentioWebhookSettings  # noqa: E402
from closeloop.integrations.severities import SeverityMap  # noqa: E402

TIMESTAMP_TOLERANCE = 5 * 60  # seconds, either way (Standard Webhooks' recommendation)


def _whsec_key(secret: str) -> bytes | None:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return None


def incidentio_signature_ok(msg_id: str, timestamp: str, body: bytes, header: str,
                            secrets: tuple[str, ...]) -> bool:
    """True when one of the header's `v1,<base64>` signatures is the HMAC-SHA256 of `id.timestamp.body`
    under one of the `whsec_` secrets."""
    signed = f"{msg_id}.{timestamp}.".encode("utf-8", "surrogateescape") + body
    given = [part[3:].encode("utf-8", "surrogateescape")
             for part in header.split()[:MAX_SIGNATURES] if part.startswith("v1,")]
    matched = False
    for secret in secrets:
        key = _whsec_key(secret)
        if key is None:
            continue
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
        for signature in given:
            matched |= hmac.compare_digest(expected, signature)
    return matched


# The events incident.io documents (WebhookPayloadDefinitionsV2): created and updated carry the incident
# object directly under the event key; status_updated wraps it as {incident, new_status, previous_status, message}.
# A private incident's events carry only {id}: starting a lifecycle would need a fetch with an API key.
PRIVATE_IGNORED = ("private incidents carry only their id; closeloop does not fetch them (subscribe to the "
                   "public_incident events)")
MAX_BODY_BYTES = 5 * 1024 * 1024  # incident.io documents no maximum; an incident with many custom fields is large


def incidentio_incident(incident: dict[str, Any], severities: SeverityMap | None = None,
                        where: str = "incident") -> Incident:
    """The closeloop Incident of incident.io's incident object (IncidentV2); `where` names it in errors."""
    fields_at = {"external_id": f"{where}.id", "title": f"{where}.name", "severity": f"{where}.severity.name",
                 "links": f"{where}.permalink", "started_at": f"{where}.created_at",
                 "resolved_at": f"{where}.updated_at", "unmapped_severity": f"{where}.severity.name"}
    for name in ("id", "name"):
        value = incident.get(name)
        if value is None:
            raise Reject(422, f"missing field {where}.{name}")
        if not isinstance(value, str) or not value.strip():
            raise Reject(422, f"field {where}.{name} must be a non-empty string")
    fields: dict[str, Any] = {"source": "incidentio", "external_id": incident["id"],
                              "title": title_text(incident["name"]),
                              "resolved_at": incident.get("updated_at") or datetime.now(UTC)}
    severity = incident.get("severity")
    given = severity.get("name") if isinstance(severity, dict) else None
    mapper = severities or SeverityMap("incidentio", IncidentioWebhookSettings().severities)
    fields["severity"], fields["unmapped_severity"] = mapper.resolve(given if isinstance(given, str) else None)
    permalink = incident.get("permalink")
    if isinstance(permalink, str) and permalink:
        reference = incident.get("reference")
        label = f"incident.io {reference}" if isinstance(reference, str) and reference else "incident.io incident"
        fields["links"] = [{"title": label[:200], "url": permalink}]
    if incident.get("created_at") is not None:
        fields["started_at"] = incident["created_at"]
    return incident_or_reject(fields, fields_at)


def _category(status: Any) -> str | None:
    category = status.get("category") if isinstance(status, dict) else None
    return category.strip().lower()[:50] if isinstance(category, str) else None


class IncidentioWebhook(IncidentWebhook):
    path = "incidentio"
    secret_names = (ENV_WEBHOOK_SECRETS,)
    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, now: Callable[[], float] = time.time, *, start_on: Iterable[str] = ("learning", "closed"),
                 severities: SeverityMap | None = None) -> None:
        self.now = now
        self.start_on = frozenset(start_on)
        self.severities = severities

    async def handle(self, request: Request, ctx: WebhookContext) -> Response:
        now = self.now
        body = await read_body(request, ctx.max_body_bytes)
        secrets = ctx.secrets.values(ENV_WEBHOOK_SECRETS)
        if not secrets:
            raise Reject(401, f"no incident.io webhook secrets are configured on this server "
                              f"(set {ENV_WEBHOOK_SECRETS})")
        msg_id = request.headers.get("webhook-id")
        timestamp = request.headers.get("webhook-timestamp")
        header = request.headers.get("webhook-signature")
        if not msg_id or not timestamp or not header:
            raise Reject(401, "missing webhook-id, webhook-timestamp or webhook-signature")
        stamp = timestamp.strip()
        if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
            raise Reject(401, "invalid webhook-timestamp")
        if abs(now() - int(stamp)) > TIMESTAMP_TOLERANCE:
            raise Reject(401, "timestamp outside tolerance")
        if not incidentio_signature_ok(msg_id, timestamp, body, header, secrets):
            log.warning("incidentio_bad_signature", webhook_id=msg_id[:100])
            raise Reject(401, "invalid webhook-signature")
        envelope = json_object(body)
        event_type = str_field(envelope, "event_type")[:100]
        payload = envelope.get(event_type)
        if event_type.startswith("private_incident."):
            log.info("incidentio_event_ignored", event_type=event_type, webhook_id=msg_id[:100], private=True)
            return JSONResponse({"ignored": event_type, "reason": PRIVATE_IGNORED}, status_code=202)
        if not event_type.startswith("public_incident.incident_"):
            log.info("incidentio_event_ignored", event_type=event_type, webhook_id=msg_id[:100])
            return JSONResponse({"ignored": event_type}, status_code=202)
        if not isinstance(payload, dict):
            raise Reject(422, f"missing field {event_type} (the incident)")
        if isinstance(payload.get("incident"), dict):  # incident_status_updated_v2: {incident, new_status, ...}
            incident, where = payload["incident"], f"{event_type}.incident"
            category = _category(incident.get("incident_status")) or _category(payload.get("new_status"))
        else:  # incident_created_v2, incident_updated_v2: the incident itself
            incident, where = payload, event_type
            category = _category(incident.get("incident_status"))
        if category not in self.start_on:
            log.info("incidentio_event_ignored", event_type=event_type, status=category, webhook_id=msg_id[:100])
            return JSONResponse({"ignored": event_type, "status": category}, status_code=202)
        return await ctx.start(incidentio_incident(incident, self.severities, where), "incidentio")
