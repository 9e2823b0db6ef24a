"""Webhooks of incident.io, Alertmanager and Opsgenie, wired by `register` into the app of
closeloop.web.app (which keeps the shared request helpers and error handling). Every endpoint follows the
PagerDuty one: size limit first (413), then authentication (401), then parsing (400 malformed JSON, 422 a
missing or invalid field), then `start_postmortem` (202, idempotent); events that do not close an
incident answer 202 `{"ignored": ...}`.

- `POST /webhooks/incidentio`: Standard Webhooks (Svix) signatures: `webhook-id`, `webhook-timestamp`
  (unix seconds, at most 5 minutes away from now either way) and `webhook-signature` (space-separated
  `v1,<base64 HMAC-SHA256>`) over `"{id}.{timestamp}.{body}"`, keyed by the base64 part of `whsec_...`
  secrets (CLOSELOOP_INCIDENTIO_SECRETS). An `public_incident.incident_*` event whose incident's status
  category is closed or resolved starts a lifecycle (source "incidentio", external_id = incident id).
- `POST /webhooks/alertmanager`: the webhook v4 JSON, authenticated by `Authorization: Bearer`
  (CLOSELOOP_ALERTMANAGER_TOKENS) or basic auth (CLOSELOOP_ALERTMANAGER_BASIC, `user:password`). A resolved
  group is ONE incident per groupKey: external_id = sha256(groupKey)[:16].
  Flapping: a group that fires and resolves again keeps its groupKey, so it maps to the same workflow id,
  and the start (REJECT_DUPLICATE) starts nothing: a flapping group never opens a second postmortem; the
  answer is 202 `{"new": false}`. The group's alerts (each firing, and resolving) are stored as the incident's
  timeline events (read back by the "alertmanager" timeline source): on a resolved delivery, and on a firing
  one for an incident already recorded (a flapping group).
- `POST /webhooks/opsgenie`: an alert's `Close` action, authenticated by the shared secret header
  `X-Closeloop-Token` (CLOSELOOP_OPSGENIE_TOKENS)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from closeloop.models import Incident
from closeloop.web.app import (
    MAX_SIGNATURES,
    Reject,
    _field,
    _str_field,
    incident_or_reject,
    json_object,
    matches_any,
    read_body,
    severity_name,
)
from closeloop.web.settings import (
    ENV_ALERTMANAGER_BASIC,
    ENV_ALERTMANAGER_TOKENS,
    ENV_INCIDENTIO_SECRETS,
    ENV_OPSGENIE_TOKENS,
    WebSecrets,
)

log = structlog.get_logger("closeloop.web")

Start = Callable[[Incident, str], Awaitable[JSONResponse]]
Timeline = Callable[..., Awaitable[Any]]

TIMESTAMP_TOLERANCE = 5 * 60  # seconds, either way (Standard Webhooks' recommendation)


def _title(text: str) -> str:
    return " ".join(text.split())[:500]


# --------------------------------------------------------------------------- incident.io


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
    external_id = _str_field({"incident": incident}, "incident.id")
    title = _str_field({"incident": incident}, "incident.name")
    fields: dict[str, Any] = {"source": "incidentio", "external_id": external_id, "title": _title(title),
                              "resolved_at": incident.get("updated_at") or datetime.now(timezone.utc)}
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


async def incidentio(request: Request, secrets: WebSecrets, limit: int, start: Start,
                     now: Callable[[], float] = time.time) -> JSONResponse:
    body = await read_body(request, limit)
    if not secrets.incidentio_secrets:
        raise Reject(401, f"no incident.io webhook secrets are configured on this server "
                          f"(set {ENV_INCIDENTIO_SECRETS})")
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
    if not incidentio_signature_ok(msg_id, timestamp, body, header, secrets.incidentio_secrets):
        log.warning("incidentio_bad_signature", webhook_id=msg_id[:100])
        raise Reject(401, "invalid webhook-signature")
    envelope = json_object(body)
    event_type = _str_field(envelope, "event_type")[:100]
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
    return await start(incidentio_incident(incident), "incidentio")


# --------------------------------------------------------------------------- Alertmanager


AM_SEVERITY = {"critical": "SEV1", "high": "SEV2", "error": "SEV2", "warning": "SEV3"}
AM_FIELDS = {"title": "commonAnnotations.summary", "services": "labels.service",
             "started_at": "alerts.startsAt", "resolved_at": "alerts.endsAt", "dedup_key": "labels.alertname"}


def check_alertmanager_auth(request: Request, secrets: WebSecrets) -> None:
    if not secrets.alertmanager_tokens and not secrets.alertmanager_basic:
        raise Reject(401, f"no Alertmanager credentials are configured on this server "
                          f"(set {ENV_ALERTMANAGER_TOKENS} or {ENV_ALERTMANAGER_BASIC})")
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    given = given.strip()
    if not given or scheme.lower() not in ("bearer", "basic"):
        raise Reject(401, "missing credentials (Authorization: Bearer <token> or Basic)")
    if scheme.lower() == "bearer":
        ok = matches_any(given.encode("utf-8", "surrogateescape"), secrets.alertmanager_tokens)
    else:
        try:
            decoded = base64.b64decode(given, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        ok = bool(decoded) and matches_any(decoded, secrets.alertmanager_basic)
    if not ok:
        raise Reject(401, "invalid credentials")


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise Reject(422, f"field {where} must be an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Reject(422, f"field {where} must be an RFC 3339 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _label(group: dict[str, Any], alerts: list[dict[str, Any]], name: str) -> str | None:
    """A label from commonLabels, else the first alert that has it."""
    for labels in [group.get("commonLabels"), *(a.get("labels") for a in alerts)]:
        if isinstance(labels, dict) and isinstance(labels.get(name), str) and labels[name].strip():
            return str(labels[name]).strip()
    return None


def alertmanager_incident(group: dict[str, Any]) -> Incident:
    group_key = _str_field(group, "groupKey")
    alerts = _field(group, "alerts")
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
    fields: dict[str, Any] = {
        "source": "alertmanager",
        "external_id": hashlib.sha256(group_key.encode("utf-8", "surrogatepass")).hexdigest()[:16],
        "title": _title(title),
        "severity": AM_SEVERITY.get(severity.lower(), "SEV3") if severity else "SEV3",
        "resolved_at": max(ends) if ends else datetime.now(timezone.utc),
    }
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


async def record_alerts(group: dict[str, Any], incident: Incident, timeline: Timeline | None, *,
                        known_only: bool) -> None:
    """Store the group's alerts on the incident's timeline; a failure is logged, never fails the delivery."""
    if timeline is None:
        return
    from closeloop.integrations.local.timeline import alertmanager_events

    try:
        await timeline(incident, alertmanager_events(group), known_only=known_only)
    except Exception as e:  # noqa: BLE001 - the lifecycle matters more than its timeline
        log.warning("alertmanager_timeline_not_stored", incident=incident.key, error=f"{type(e).__name__}: {e}")


async def alertmanager(request: Request, secrets: WebSecrets, limit: int, start: Start,
                       timeline: Timeline | None = None) -> JSONResponse:
    body = await read_body(request, limit)
    check_alertmanager_auth(request, secrets)
    group = json_object(body)
    status = _str_field(group, "status")[:50]
    if status != "resolved":
        log.info("alertmanager_group_ignored", status=status)
        if timeline is not None and isinstance(group.get("groupKey"), str) and isinstance(group.get("alerts"), list):
            try:
                firing = alertmanager_incident(group)
            except Reject:
                firing = None
            if firing is not None:
                await record_alerts(group, firing, timeline, known_only=True)
        return JSONResponse({"ignored": status}, status_code=202)
    incident = alertmanager_incident(group)
    await record_alerts(group, incident, timeline, known_only=False)
    return await start(incident, "alertmanager")


# --------------------------------------------------------------------------- Opsgenie


OG_PRIORITY = {"P1": "SEV1", "P2": "SEV2", "P3": "SEV3", "P4": "SEV4", "P5": "SEV4"}
OG_FIELDS = {"external_id": "alert.alertId", "title": "alert.message", "services": "alert.tags",
             "started_at": "alert.createdAt", "dedup_key": "alert.alias"}


def check_opsgenie_token(request: Request, secrets: WebSecrets) -> None:
    if not secrets.opsgenie_tokens:
        raise Reject(401, f"no Opsgenie tokens are configured on this server (set {ENV_OPSGENIE_TOKENS})")
    given = request.headers.get("x-closeloop-token", "").strip()
    if not given:
        raise Reject(401, "missing X-Closeloop-Token")
    if not matches_any(given.encode("utf-8", "surrogateescape"), secrets.opsgenie_tokens):
        raise Reject(401, "invalid X-Closeloop-Token")


def opsgenie_incident(envelope: dict[str, Any]) -> Incident:
    alert = _field(envelope, "alert")
    if not isinstance(alert, dict):
        raise Reject(422, "field alert must be an object")
    fields: dict[str, Any] = {
        "source": "opsgenie",
        "external_id": _str_field(envelope, "alert.alertId"),
        "title": _title(_str_field(envelope, "alert.message")),
        "resolved_at": datetime.now(timezone.utc),
    }
    priority = alert.get("priority")
    fields["severity"] = OG_PRIORITY.get(priority.strip().upper(), "SEV3") if isinstance(priority, str) else "SEV3"
    tags = alert.get("tags")
    if isinstance(tags, list):
        services = [t.split(":", 1)[1].strip()[:200] for t in tags
                    if isinstance(t, str) and t.startswith("service:") and t.split(":", 1)[1].strip()]
        fields["services"] = list(dict.fromkeys(services))
    created = alert.get("createdAt")
    if created is not None:
        if type(created) is not int or not 0 < created < 253_402_300_800_000:
            raise Reject(422, "field alert.createdAt must be a time in epoch milliseconds")
        fields["started_at"] = datetime.fromtimestamp(created / 1000, timezone.utc)
    if isinstance(alert.get("alias"), str) and alert["alias"].strip():
        fields["dedup_key"] = alert["alias"].strip()[:200]
    return incident_or_reject(fields, OG_FIELDS)


async def opsgenie(request: Request, secrets: WebSecrets, limit: int, start: Start) -> JSONResponse:
    body = await read_body(request, limit)
    check_opsgenie_token(request, secrets)
    envelope = json_object(body)
    action = _str_field(envelope, "action")[:50]
    if action != "Close":
        log.info("opsgenie_action_ignored", action=action)
        return JSONResponse({"ignored": action}, status_code=202)
    return await start(opsgenie_incident(envelope), "opsgenie")


# --------------------------------------------------------------------------- wiring


def register(app: FastAPI, secrets: WebSecrets, limit: int, start: Start, timeline: Timeline | None = None) -> None:
    @app.post("/webhooks/incidentio")
    async def _incidentio(request: Request) -> JSONResponse:
        return await incidentio(request, secrets, limit, start)

    @app.post("/webhooks/alertmanager")
    async def _alertmanager(request: Request) -> JSONResponse:
        return await alertmanager(request, secrets, limit, start, timeline)

    @app.post("/webhooks/opsgenie")
    async def _opsgenie(request: Request) -> JSONResponse:
        return await opsgenie(request, secrets, limit, start)
