"""The HTTP app: `GET /healthz`, the generic incident API (`POST /api/incidents`,
`POST /api/incidents/{source}/{external_id}/resolve`, `POST /api/incidents/{source}/{external_id}/notes`
(a timeline note), bearer tokens) and the PagerDuty v3 webhook
(`POST /webhooks/pagerduty`, signed with X-PagerDuty-Signature); the incident.io, Alertmanager and Opsgenie
webhooks are in closeloop.web.sources; the Jira and GitHub ticket status webhooks (`/webhooks/jira`,
`/webhooks/github`) in closeloop.web.trackers.

Every request that starts something calls `start_postmortem`, whose workflow id is
`postmortem/<source>/<external_id>`: a repeated delivery never starts a second lifecycle, so the handlers
keep no state of their own. Bodies are read raw (the signature covers the exact bytes) and capped at
`[web] max_body_bytes`. Every error is a JSON `{"error": ...}`; never a traceback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from closeloop.client import Closeloop
from closeloop.config import Config
from closeloop.models import Incident, TimelineEvent, postmortem_workflow_id
from closeloop.store.store import Store
from closeloop.web.settings import ENV_API_TOKENS, ENV_PAGERDUTY_SECRETS, WebSecrets, load_secrets

log = structlog.get_logger("closeloop.web")

ClientFactory = Callable[[], Awaitable[Client]]

MAX_SIGNATURES = 16  # more than any rotation needs; bounds the work an unsigned request can cause


class Reject(Exception):
    """Ends a request with `status` and `{"error": message}` (plus optional headers)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(e: ValidationError, prefix: str = "") -> str:
    errors = e.errors()
    err = errors[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    where = f"{prefix}{loc}" if loc else prefix.rstrip(".")
    return f"invalid incident: {where}: {msg}{more}" if where else f"invalid incident: {msg}{more}"


# --------------------------------------------------------------------------- request helpers


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes: by Content-Length up front, and by what actually
    arrives (a chunked body, or one longer than its Content-Length said)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise Reject(400, "invalid Content-Length")
        if int(declared) > limit:
            raise Reject(413, f"body too large: the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Reject(413, f"body too large: the limit is {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        detail = f": {e.msg} (line {e.lineno}, column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        raise Reject(400, f"malformed JSON{detail}") from None


def json_object(body: bytes, *, empty_ok: bool = False) -> dict[str, Any]:
    if empty_ok and not body.strip():
        return {}
    data = parse_json(body)
    if not isinstance(data, dict):
        raise Reject(400, "the body must be a JSON object")
    return data


def matches_any(given: bytes, candidates: tuple[str, ...]) -> bool:
    """Constant-time comparison with every candidate (no early exit)."""
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(given, candidate.encode("utf-8", "surrogateescape"))
    return matched


def incident_or_reject(fields: dict[str, Any], where: dict[str, str]) -> Incident:
    """Incident.model_validate, or Reject(422) naming the sender's field (`where` maps ours to theirs)."""
    try:
        return Incident.model_validate(fields)
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise Reject(422, f"invalid field {where.get(field, field)}: {msg}") from None


def severity_name(name: str) -> str:
    """"P1" / "SEV1" -> "SEV1"; any other name kept as it is (at most 32 characters)."""
    m = _PRIORITY.fullmatch(name.strip())
    return f"SEV{m.group(1)}" if m else name.strip()[:32]


def check_bearer(request: Request, tokens: tuple[str, ...]) -> None:
    challenge = {"WWW-Authenticate": "Bearer"}
    if not tokens:
        raise Reject(401, f"no API tokens are configured on this server (set {ENV_API_TOKENS})", challenge)
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Reject(401, "missing bearer token (Authorization: Bearer <token>)", challenge)
    if not matches_any(given.strip().encode("utf-8", "surrogateescape"), tokens):
        raise Reject(401, "invalid bearer token", challenge)


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


# --------------------------------------------------------------------------- PagerDuty payloads


PD_URGENCY = {"high": "SEV2", "low": "SEV3"}
_PRIORITY = re.compile(r"(?:p|sev)\s*-?\s*(\d)", re.IGNORECASE)


def _field(obj: Any, path: str) -> Any:
    """obj[a][b]... for "a.b...", or Reject(422) naming the missing field."""
    current = obj
    for name in path.split("."):
        if not isinstance(current, dict) or current.get(name) is None:
            raise Reject(422, f"missing field {path}")
        current = current[name]
    return current


def _str_field(obj: Any, path: str) -> str:
    value = _field(obj, path)
    if not isinstance(value, str) or not value.strip():
        raise Reject(422, f"field {path} must be a non-empty string")
    return value


def _summary(obj: Any) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("summary"), str) and obj["summary"].strip():
        return str(obj["summary"]).strip()
    return None


def pagerduty_severity(data: dict[str, Any]) -> str:
    """The priority's summary when the incident has one ("P1" -> "SEV1"; any other name kept as is),
    else the urgency: high -> SEV2, low -> SEV3."""
    priority = _summary(data.get("priority"))
    if priority:
        return severity_name(priority)
    urgency = data.get("urgency")
    return PD_URGENCY.get(urgency.lower(), "SEV3") if isinstance(urgency, str) else "SEV3"


# Where each Incident field comes from in the v3 envelope, so a validation error names the sender's field.
PD_FIELDS = {
    "external_id": "event.data.id", "title": "event.data.title", "severity": "event.data.priority.summary",
    "services": "event.data.service.summary", "links": "event.data.html_url",
    "started_at": "event.data.created_at", "resolved_at": "event.occurred_at",
    "dedup_key": "event.data.incident_key",
}


def pagerduty_incident(envelope: dict[str, Any]) -> Incident:
    """The closeloop Incident of an `incident.resolved` v3 envelope. Reject(422) when a needed field is
    missing or invalid."""
    event = envelope["event"]
    data = _field(envelope, "event.data")
    if not isinstance(data, dict):
        raise Reject(422, "field event.data must be an object")
    external_id = _str_field(envelope, "event.data.id")
    title = _str_field(envelope, "event.data.title")
    fields: dict[str, Any] = {
        "source": "pagerduty",
        "external_id": external_id,
        "title": " ".join(title.split())[:500],
        "severity": pagerduty_severity(data),
        "resolved_at": event.get("occurred_at") or datetime.now(timezone.utc),
    }
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


# --------------------------------------------------------------------------- the app


def note_event(data: dict[str, Any]) -> TimelineEvent:
    """A timeline note from the notes API's JSON ({"text", "at"?, "author"?, "key_moment"?}), or Reject(422)."""
    unknown = sorted(set(data) - {"text", "at", "author", "key_moment"})
    if unknown:
        raise Reject(422, f"unknown field {unknown[0]} (expected text, at, author, key_moment)")
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise Reject(422, "field text must be a non-empty string")
    if len(text) > 5000:
        raise Reject(422, "field text must be at most 5000 characters")
    author = data.get("author")
    if author is not None and (not isinstance(author, str) or not author.strip() or len(author) > 200):
        raise Reject(422, "field author must be a non-empty string of at most 200 characters")
    key_moment = data.get("key_moment", False)
    if not isinstance(key_moment, bool):
        raise Reject(422, "field key_moment must be true or false")
    at = data.get("at")
    if at is None:
        at = datetime.now(timezone.utc)
    elif not isinstance(at, str):
        raise Reject(422, "field at must be an ISO 8601 time")
    try:
        return TimelineEvent(at=at, source="notes", kind="note", text=text.strip(),
                             actor=author.strip() if author else None, key_moment=key_moment)
    except ValidationError:
        raise Reject(422, "field at must be an ISO 8601 time") from None


def create_app(config: Config, client_factory: ClientFactory, *, secrets: WebSecrets | None = None,
               store: Store | None = None) -> FastAPI:
    """The FastAPI app. `client_factory` is awaited once, on the first request that needs Temporal (a
    failed connect is retried by the next request). `secrets` default to the environment (load_secrets).
    `store` (a closeloop Store) defaults to one on `config.db_url`, opened on the first request that needs it."""
    secrets = load_secrets() if secrets is None else secrets
    limit = config.web.max_body_bytes
    task_queue = config.temporal.task_queue
    owned: list[Store] = []  # a store the app opened itself, closed when it shuts down

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for opened in owned:
            await asyncio.to_thread(opened.close)

    app = FastAPI(title="closeloop", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    client_lock = asyncio.Lock()
    cached: list[Closeloop] = []
    stores: list[Store] = [store] if store is not None else []

    async def the_store() -> Store:
        if not stores:
            async with client_lock:
                if not stores:
                    opened = await asyncio.to_thread(Store, config.db_url)
                    owned.append(opened)
                    stores.append(opened)
        return stores[0]

    async def add_timeline(incident: Incident, events: list[TimelineEvent], *, notes: bool = False,
                           known_only: bool = False) -> int | None:
        """Store timeline events for the incident; None when `known_only` and the incident is not recorded."""
        records = (await the_store()).records
        if known_only and await asyncio.to_thread(records.incident_id, incident.source, incident.external_id) is None:
            return None
        return int(await asyncio.to_thread(records.add_timeline_events, incident, events, notes=notes))

    async def client() -> Closeloop:
        if cached:
            return cached[0]
        async with client_lock:
            if not cached:
                try:
                    cached.append(Closeloop(await client_factory(), task_queue))
                except Exception as e:  # noqa: BLE001 - any connect failure is "Temporal unavailable"
                    log.warning("temporal_connect_failed", address=config.temporal.address,
                                error=f"{type(e).__name__}: {e}")
                    raise Reject(503, "Temporal is unreachable; try again later") from None
        return cached[0]

    async def start(incident: Incident, via: str) -> JSONResponse:
        try:
            started = await (await client()).start_postmortem(incident)
        except RPCError as e:
            log.warning("start_failed", workflow_id=incident.workflow_id, via=via, status=e.status.name
                        if e.status else None, error=e.message)
            if e.status == RPCStatusCode.INVALID_ARGUMENT:
                raise Reject(422, f"Temporal refused the lifecycle: {e.message}") from None
            raise Reject(503, "could not start the lifecycle: Temporal is unavailable; try again later") from None
        log.info("lifecycle_started" if started.new else "lifecycle_exists", workflow_id=started.workflow_id,
                 via=via, severity=incident.severity)
        return JSONResponse({"workflow_id": started.workflow_id, "new": started.new}, status_code=202)

    async def exists(workflow_id: str) -> bool:
        """Whether the incident has (or had) a lifecycle. The raw RPC: nothing to decode but the answer."""
        try:
            return await (await client()).exists(workflow_id)
        except RPCError:
            raise Reject(503, "Temporal is unavailable; try again later") from None

    # ------------------------------------------------------------------ errors: always JSON

    @app.exception_handler(Reject)
    async def _reject(_: Request, e: Reject) -> JSONResponse:
        return _error(e.status, e.message, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception) -> JSONResponse:
        log.error("unexpected_error", path=request.url.path, error=f"{type(e).__name__}: {e}")
        return _error(500, "internal error")

    # ------------------------------------------------------------------ endpoints

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/api/incidents")
    async def api_incident(request: Request) -> JSONResponse:
        check_bearer(request, secrets.api_tokens)
        data = json_object(await read_body(request, limit))
        data.setdefault("source", "api")
        if data.get("resolved_at") is None:
            data["resolved_at"] = datetime.now(timezone.utc)
        try:
            incident = Incident.model_validate(data)
        except ValidationError as e:
            raise Reject(422, _validation_message(e)) from None
        return await start(incident, "api")

    @app.post("/api/incidents/{source}/{external_id}/resolve")
    async def api_resolve(source: str, external_id: str, request: Request) -> JSONResponse:
        check_bearer(request, secrets.api_tokens)
        data = json_object(await read_body(request, limit), empty_ok=True)
        for key, value in (("source", source), ("external_id", external_id)):
            if key in data and data[key] != value:
                raise Reject(422, f"{key} in the body ({data[key]!r}) differs from the path ({value!r})")
            data[key] = value
        if data.get("resolved_at") is None:
            data["resolved_at"] = datetime.now(timezone.utc)
        if "title" not in data:
            # Known already (a lifecycle exists): nothing to start, and nothing more is needed.
            workflow_id = postmortem_workflow_id(source, external_id)
            if "/" not in external_id and await exists(workflow_id):
                return JSONResponse({"workflow_id": workflow_id, "new": False}, status_code=202)
            raise Reject(422, f"title is required: closeloop does not know incident {source}/{external_id}")
        try:
            incident = Incident.model_validate(data)
        except ValidationError as e:
            raise Reject(422, _validation_message(e)) from None
        return await start(incident, "api")

    @app.post("/api/incidents/{source}/{external_id}/notes")
    async def api_note(source: str, external_id: str, request: Request) -> JSONResponse:
        check_bearer(request, secrets.api_tokens)
        event = note_event(json_object(await read_body(request, limit)))
        records = (await the_store()).records
        incident = await asyncio.to_thread(records.get_incident, source, external_id)
        if incident is None:
            raise Reject(404, f"no incident {source}/{external_id} is recorded")
        added = await add_timeline(incident, [event], notes=True)
        log.info("timeline_note_added" if added else "timeline_note_exists", incident=incident.key)
        return JSONResponse({"incident": f"{source}/{external_id}", "added": bool(added),
                             "at": event.at.isoformat()}, status_code=201 if added else 200)

    @app.post("/webhooks/pagerduty")
    async def pagerduty(request: Request) -> JSONResponse:
        body = await read_body(request, limit)
        if not secrets.pagerduty_secrets:
            raise Reject(401, f"no PagerDuty webhook secrets are configured on this server "
                              f"(set {ENV_PAGERDUTY_SECRETS})")
        header = request.headers.get("x-pagerduty-signature")
        if not header:
            raise Reject(401, "missing X-PagerDuty-Signature")
        if not pagerduty_signature_ok(body, header, secrets.pagerduty_secrets):
            log.warning("pagerduty_bad_signature", webhook_id=request.headers.get("x-webhook-id"))
            raise Reject(401, "invalid X-PagerDuty-Signature")
        envelope = json_object(body)
        if not isinstance(_field(envelope, "event"), dict):
            raise Reject(422, "field event must be an object")
        event_type = _str_field(envelope, "event.event_type")[:100]
        if event_type != "incident.resolved":
            log.info("pagerduty_event_ignored", event_type=event_type, webhook_id=request.headers.get("x-webhook-id"))
            return JSONResponse({"ignored": event_type}, status_code=202)
        return await start(pagerduty_incident(envelope), "pagerduty")

    from closeloop.web import sources  # here, not at the top: sources imports this module's helpers

    sources.register(app, secrets, limit, start, timeline=add_timeline)
    from closeloop.web import trackers

    trackers.register(app, config, secrets, limit, client, the_store)
    return app
