"""incident.io's webhook: `POST /webhooks/incidentio`, Standard Webhooks (Svix) signatures: `webhook-id`,
`webhook-timestamp` (unix seconds, at most 5 minutes away from now either way) and `webhook-signature`
(space-separated `v1,<base64 HMAC-SHA256>`) over `"{id}.{timestamp}.{body}"`, keyed by the base64 part of
`whsec_...` secrets (CLOSELOOP_INCIDENTIO_SECRETS). A `public_incident.incident_*` event whose incident's status
category is closed or resolved starts a lifecycle (source "incidentio", external_id = incident id)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
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
    severity_name,
    str_field,
    title_text,
)

log = structlog.get_logger("closeloop.web")


from closeloop.integrations.incidentio.settings import ENV_WEBHOOK_SECRETS  # noqa: E402

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


INCIDENTIO_CLOSED = {"closed", "resolved"}
INCIDENTIO_FIELDS = {
    "external_id": "incident.id", "title": "incident.name", "severity": "incident.severity.name",
    "links": "incident.permalink", "started_at": "incident.created_at", "resolved_at": "incident.updated_at",
}


def incidentio_incident(incident: dict[str, Any]) -> Incident:
    external_id = str_field({"incident": incident}, "incident.id")
    title = str_field({"incident": incident}, "incident.name")
    fields: dict[str, Any] = {"source": "incidentio", "external_id": external_id, "title": title_text(title),
                              "resolved_at": incident.get("updated_at") or datetime.now(UTC)}
    severity = incident.get("severity")
    if isinstance(severity, dict) and isinstance(severity.get("name"), str) and severity["name"].strip():
        fields["severity"] = severity_name(severity["name"])
    permalink = incident.get("permalink")
    if isinstance(permalink, str) and permalink:
        reference = incident.get("reference")
        label = f"incident.io {reference}" if isinstance(reference, str) and reference else "incident.io incident"
        fields["links"] = [{"title": label[:200], "url": permalink}]
    if incident.get("created_at") is not None:
        fields["started_at"] = incident["created_at"]
    return incident_or_reject(fields, INCIDENTIO_FIELDS)


class IncidentioWebhook(IncidentWebhook):
    path = "incidentio"
    secret_names = (ENV_WEBHOOK_SECRETS,)

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self.now = now

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
        if not event_type.startswith("public_incident.incident_"):
            log.info("incidentio_event_ignored", event_type=event_type, webhook_id=msg_id[:100])
            return JSONResponse({"ignored": event_type}, status_code=202)
        if not isinstance(payload, dict) or not isinstance(payload.get("incident"), dict):
            raise Reject(422, f"missing field {event_type}.incident")
        incident = payload["incident"]
        status = incident.get("incident_status")
        category = status.get("category") if isinstance(status, dict) else None
        if not isinstance(category, str) or category.lower() not in INCIDENTIO_CLOSED:
            shown = category[:50] if isinstance(category, str) else None
            log.info("incidentio_event_ignored", event_type=event_type, status=shown, webhook_id=msg_id[:100])
            return JSONResponse({"ignored": event_type, "status": shown}, status_code=202)
        return await ctx.start(incidentio_incident(incident), "incidentio")
