"""Alertmanager's webhook (v4 JSON): `POST /webhooks/alertmanager`, authenticated by `Authorization: Bearer`
(CLOSELOOP_ALERTMANAGER_TOKENS) or basic auth (CLOSELOOP_ALERTMANAGER_BASIC, `user:password`). A resolved
group is ONE incident per groupKey: external_id = sha256(groupKey)[:16].

Flapping: a group that fires and resolves again keeps its groupKey, so it maps to the same workflow id, and
the start (REJECT_DUPLICATE) starts nothing: a flapping group never opens a second postmortem; the answer is
202 `{"new": false}`. The group's alerts (each firing, and resolving) are stored as the incident's timeline
events (read back by the "alertmanager" timeline source): on a resolved delivery, and on a firing one for an
incident already recorded (a flapping group)."""

from __future__ import annotations

import base64
import binascii
import hashlib
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


from closeloop.integrations.alertmanager.settings import (  # noqa: E402
    ENV_BASIC,
    ENV_TOKENS,
    AlertmanagerWebhookSettings,
)
from closeloop.integrations.alertmanager.timeline import alertmanager_events  # noqa: E402
from closeloop.integrations.severities import SeverityMap  # noqa: E402

AM_FIELDS = {"title": "commonAnnotations.summary", "services": "labels.service",
             "started_at": "alerts.startsAt", "resolved_at": "alerts.endsAt", "dedup_key": "labels.alertname",
             "unmapped_severity": "labels.severity"}
# Alertmanager documents no maximum: a group carries every alert unless the receiver sets `max_alerts`, and each
# alert its labels and annotations. 10 MiB holds thousands of alerts.
MAX_BODY_BYTES = 10 * 1024 * 1024


def check_alertmanager_auth(request: Request, ctx: WebhookContext) -> None:
    tokens, basic = ctx.secrets.values(ENV_TOKENS), ctx.secrets.values(ENV_BASIC)
    if not tokens and not basic:
        raise Reject(401, f"no Alertmanager credentials are configured on this server "
                          f"(set {ENV_TOKENS} or {ENV_BASIC})")
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    given = given.strip()
    if not given or scheme.lower() not in ("bearer", "basic"):
        raise Reject(401, "missing credentials (Authorization: Bearer <token> or Basic)")
    if scheme.lower() == "bearer":
        ok = matches_any(given.encode("utf-8", "surrogateescape"), tokens)
    else:
        try:
            decoded = base64.b64decode(given, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        ok = bool(decoded) and matches_any(decoded, basic)
    if not ok:
        raise Reject(401, "invalid credentials")


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise Reject(422, f"field {where} must be an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Reject(422, f"field {where} must be an RFC 3339 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _label(group: dict[str, Any], alerts: list[dict[str, Any]], name: str) -> str | None:
    """A label from commonLabels, else the first alert that has it."""
    for labels in [group.get("commonLabels"), *(a.get("labels") for a in alerts)]:
        if isinstance(labels, dict) and isinstance(labels.get(name), str) and labels[name].strip():
            return str(labels[name]).strip()
    return None


def alertmanager_incident(group: dict[str, Any], severities: SeverityMap | None = None) -> Incident:
    group_key = str_field(group, "groupKey")
    alerts = field(group, "alerts")
    if not isinstance(alerts, list) or not alerts or not all(isinstance(a, dict) for a in alerts):
        raise Reject(422, "field alerts must be a non-empty list of objects")
    alertname = _label(group, alerts, "alertname")
    annotations = group.get("commonAnnotations")
    summary = annotations.get("summary") if isinstance(annotations, dict) else None
    title = summary if isinstance(summary, str) and summary.strip() else alertname
    if not title:
        raise Reject(422, "missing field commonAnnotations.summary (or an alertname label)")
    starts = [_time(a["startsAt"], f"alerts[{i}].startsAt") for i, a in enumerate(alerts)
              if a.get("startsAt") is not None]
    ends = [_time(a["endsAt"], f"alerts[{i}].endsAt") for i, a in enumerate(alerts)
            if a.get("endsAt") is not None]
    ends = [t for t in ends if t.year > 1]  # Go's zero time: not ended
    severity = _label(group, alerts, "severity")
    mapper = severities or SeverityMap("alertmanager", AlertmanagerWebhookSettings().severities)
    fields: dict[str, Any] = {
        "source": "alertmanager",
        "external_id": hashlib.sha256(group_key.encode("utf-8", "surrogatepass")).hexdigest()[:16],
        "title": title_text(title),
        "resolved_at": max(ends) if ends else datetime.now(UTC),
    }
    fields["severity"], fields["unmapped_severity"] = mapper.resolve(severity)
    if starts:
        fields["started_at"] = min(starts)
    services = sorted({str(a["labels"]["service"]).strip()[:200] for a in alerts
                       if isinstance(a.get("labels"), dict) and isinstance(a["labels"].get("service"), str)
                       and a["labels"]["service"].strip()})
    if not services and (common := _label(group, [], "service")):
        services = [common[:200]]
    if services:
        fields["services"] = services
    if alertname:
        fields["dedup_key"] = alertname[:200]
    url = group.get("externalURL")
    if isinstance(url, str) and url:
        fields["links"] = [{"title": "Alertmanager", "url": url}]
    return incident_or_reject(fields, AM_FIELDS)


async def record_alerts(group: dict[str, Any], incident: Incident, ctx: WebhookContext, *, known_only: bool) -> None:
    """Store the group's alerts on the incident's timeline; a failure is logged, never fails the delivery."""
    try:
        await ctx.add_timeline(incident, alertmanager_events(group), known_only=known_only)
    except Exception as e:  # noqa: BLE001 - the lifecycle matters more than its timeline
        log.warning("alertmanager_timeline_not_stored", incident=incident.key, error=f"{type(e).__name__}: {e}")


class AlertmanagerWebhook(IncidentWebhook):
    path = "alertmanager"
    secret_names = (ENV_TOKENS, ENV_BASIC)
    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, *, severities: SeverityMap | None = None) -> None:
        self.severities = severities

    async def handle(self, request: Request, ctx: WebhookContext) -> Response:
        body = await read_body(request, ctx.max_body_bytes)
        check_alertmanager_auth(request, ctx)
        group = json_object(body)
        status = str_field(group, "status")[:50]
        if status != "resolved":
            log.info("alertmanager_group_ignored", status=status)
            if isinstance(group.get("groupKey"), str) and isinstance(group.get("alerts"), list):
                try:
                    firing = alertmanager_incident(group, self.severities)
                except Reject:
                    firing = None
                if firing is not None:
                    await record_alerts(group, firing, ctx, known_only=True)
            return JSONResponse({"ignored": status}, status_code=202)
        incident = alertmanager_incident(group, self.severities)
        await record_alerts(group, incident, ctx, known_only=False)
        return await ctx.start(incident, "alertmanager")
