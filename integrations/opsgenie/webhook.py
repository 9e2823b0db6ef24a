"""Opsgenie's webhook: `POST /webhooks/opsgenie`, an alert's `Close` action, authenticated by the shared secret
header `X-Closeloop-Token` (CLOSELOOP_OPSGENIE_TOKENS, comma-separated; constant-time compares)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from closeloop.integrations.base import IncidentWebhook, WebhookContext
from closeloop.models import Incident
from closeloop.web.requests import (
    Reject,
    field,
    incident_or_reject,
    json_object,
    matches_any,
    read_body,
    str_field,
    title_text,
)

log = structlog.get_logger("closeloop.web")


from closeloop.integrations.opsgenie.settings import ENV_TOKENS, OpsgenieWebhookSettings  # noqa: E402
from closeloop.integrations.severities import SeverityMap  # noqa: E402

OG_FIELDS = {"external_id": "alert.alertId", "title": "alert.message", "services": "alert.tags",
             "started_at": "alert.createdAt", "dedup_key": "alert.alias", "unmapped_severity": "alert.priority"}
# Opsgenie documents no maximum; its webhook truncates an alert's description and details to 1000 characters,
# so a delivery is small: 1 MiB leaves room for many tags, teams and recipients.
MAX_BODY_BYTES = 1024 * 1024


def check_opsgenie_token(request: Request, ctx: WebhookContext) -> None:
    tokens = ctx.secrets.values(ENV_TOKENS)
    if not tokens:
        raise Reject(401, f"no Opsgenie tokens are configured on this server (set {ENV_TOKENS})")
    given = request.headers.get("x-closeloop-token", "").strip()
    if not given:
        raise Reject(401, "missing X-Closeloop-Token")
    if not matches_any(given.encode("utf-8", "surrogateescape"), tokens):
        raise Reject(401, "invalid X-Closeloop-Token")


def opsgenie_incident(envelope: dict[str, Any], severities: SeverityMap | None = None) -> Incident:
    alert = field(envelope, "alert")
    if not isinstance(alert, dict):
        raise Reject(422, "field alert must be an object")
    fields: dict[str, Any] = {
        "source": "opsgenie",
        "external_id": str_field(envelope, "alert.alertId"),
        "title": title_text(str_field(envelope, "alert.message")),
        "resolved_at": datetime.now(UTC),
    }
    priority = alert.get("priority")
    if priority is not None and not isinstance(priority, str):
        priority = json.dumps(priority)  # not Opsgenie's documented "P1".."P5": flagged unless the config maps it
    mapper = severities or SeverityMap("opsgenie", OpsgenieWebhookSettings().severities)
    fields["severity"], fields["unmapped_severity"] = mapper.resolve(priority)
    tags = alert.get("tags")
    if isinstance(tags, list):
        services = [t.split(":", 1)[1].strip()[:200] for t in tags
                    if isinstance(t, str) and t.startswith("service:") and t.split(":", 1)[1].strip()]
        fields["services"] = list(dict.fromkeys(services))
    created = alert.get("createdAt")
    if created is not None:
        if type(created) is not int or not 0 < created < 253_402_300_800_000:
            raise Reject(422, "field alert.createdAt must be a time in epoch milliseconds")
        fields["started_at"] = datetime.fromtimestamp(created / 1000, UTC)
    if isinstance(alert.get("alias"), str) and alert["alias"].strip():
        fields["dedup_key"] = alert["alias"].strip()[:200]
    return incident_or_reject(fields, OG_FIELDS)


class OpsgenieWebhook(IncidentWebhook):
    path = "opsgenie"
    secret_names = (ENV_TOKENS,)
    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, *, severities: SeverityMap | None = None) -> None:
        self.severities = severities

    async def handle(self, request: Request, ctx: WebhookContext) -> Response:
        body = await read_body(request, ctx.max_body_bytes)
        check_opsgenie_token(request, ctx)
        envelope = json_object(body)
        action = str_field(envelope, "action")[:50]
        if action != "Close":
            log.info("opsgenie_action_ignored", action=action)
            return JSONResponse({"ignored": action}, status_code=202)
        return await ctx.start(opsgenie_incident(envelope, self.severities), "opsgenie")
