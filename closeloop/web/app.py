"""The HTTP app: `GET /healthz`, the generic incident API (`POST /api/incidents`,
`POST /api/incidents/{source}/{external_id}/resolve`, `POST /api/incidents/{source}/{external_id}/notes`
(a timeline note); bearer tokens from CLOSELOOP_API_TOKENS, each for source `api` unless it names others:
closeloop.web.requests.api_tokens), and the webhooks of the integration plugins,
each at `POST /webhooks/<path>` (PagerDuty, incident.io, Alertmanager and Opsgenie incidents; Jira and
GitHub ticket status: closeloop.integrations.<vendor>.webhook; the buttons of Slack messages at
`POST /webhooks/slack/interactions`, run as the person who pressed them through `WebhookContext.act`:
closeloop.web.actions).

A request that starts a lifecycle (every incident webhook, `POST /api/incidents`, `.../resolve`) is answered
202 `{"workflow_id", "new"}` once the incident is committed to the store's inbox, unique on source and
incident id: `new` is false for a repeated delivery. It does not wait for Temporal: the forwarder
(closeloop.forwarder; run by the app's lifespan, or by the worker: `[inbox] forward_in`) starts the lifecycles,
workflow id
`postmortem/<source>/<external_id>` (so a repeat never starts a second one), and retries while Temporal is
down. Temporal's own error text never reaches a client. Bodies are read raw (the signature covers the exact
bytes) and capped: the API's at `[web] max_body_bytes`, each webhook's at its vendor's documented maximum
(`Webhook.max_body_bytes`); a body is due within `[web] body_timeout` (closeloop/web/deadlines.py). Every
error is a JSON `{"error": ...}`; never a traceback. A client that leaves mid-request is logged at debug only."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from temporalio.client import Client
from temporalio.service import RPCError

from closeloop.client import Closeloop
from closeloop.config import Config
from closeloop.contract import postmortem_workflow_id
from closeloop.db_errors import db_reason, unreachable_database
from closeloop.forwarder import Forwarder
from closeloop.integrations.base import (
    ActionRefused,
    IncidentWebhook,
    InteractionWebhook,
    StatusChange,
    TicketWebhook,
    Webhook,
)
from closeloop.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from closeloop.metrics import WEBHOOK_SECONDS, LifecycleGauges, exposition, registry_with
from closeloop.models import Incident, TimelineEvent
from closeloop.readmodel import AuditEntry, Insights, WebViews
from closeloop.secrets import ENV_API_TOKENS, Secrets
from closeloop.telemetry import (
    ENV_METRICS_TOKEN,
    database_problem,
    metrics_allowed,
    readiness,
    temporal_problem,
)
from closeloop.timeline import NoteError, note_event
from closeloop.web import actions, ticket_status
from closeloop.web.deadlines import BodyDeadline
from closeloop.web.intake import Intake
from closeloop.web.operator import mount_operator
from closeloop.web.pages import mount_pages
from closeloop.web.requests import (
    API_SOURCE,
    Reject,
    api_tokens,
    check_bearer,
    check_incident_path,
    check_source,
    error_response,
    json_object,
    read_body,
    validation_message,
)
from closeloop.web.signin import SESSION_COOKIE, session_secret
from closeloop.web.storage import Inbox, WebStorage

log = structlog.get_logger("closeloop.web")

RETRY_AFTER = "30"  # seconds, on every 503 (Temporal or the database unavailable)
ClientFactory = Callable[[], Awaitable[Client]]
StorageOpener = Callable[[str], WebStorage]


def note_from_json(data: dict[str, Any]) -> TimelineEvent:
    """A timeline note from the notes API's JSON ({"text", "at"?, "author"?, "key_moment"?}), or Reject(422)."""
    unknown = sorted(set(data) - {"text", "at", "author", "key_moment"})
    if unknown:
        raise Reject(422, f"unknown field {unknown[0]} (expected text, at, author, key_moment)")
    text, author, key_moment, at = data.get("text"), data.get("author"), data.get("key_moment", False), data.get("at")
    if not isinstance(text, str):
        raise Reject(422, "field text must be a non-empty string")
    if author is not None and not isinstance(author, str):
        raise Reject(422, "field author must be a non-empty string of at most 200 characters")
    if not isinstance(key_moment, bool):
        raise Reject(422, "field key_moment must be true or false")
    if at is not None and not isinstance(at, str):
        raise Reject(422, "field at must be an ISO 8601 time")
    try:
        return note_event(text, at=at if at is not None else datetime.now(UTC), author=author,
                          key_moment=key_moment)
    except NoteError as e:
        raise Reject(422, f"field {e}") from None


class _Context:
    """The WebhookContext the plugins' webhooks get (closeloop.integrations.base)."""

    def __init__(self, max_body_bytes: int, secrets: Secrets, start: Callable[[Incident, str], Awaitable[Response]],
                 add_timeline: Callable[..., Awaitable[int | None]],
                 ticket_status: Callable[[StatusChange | str, str, str], Awaitable[Response]],
                 act: Callable[[str, str, str, str], Awaitable[str]]) -> None:
        self.max_body_bytes = max_body_bytes
        self.secrets = secrets
        self._start, self._add_timeline, self._ticket_status, self._act = start, add_timeline, ticket_status, act

    async def start(self, incident: Incident, via: str) -> Response:
        return await self._start(incident, via)

    async def add_timeline(self, incident: Incident, events: list[TimelineEvent], *, notes: bool = False,
                           known_only: bool = False) -> int | None:
        return await self._add_timeline(incident, events, notes=notes, known_only=known_only)

    async def ticket_status(self, change: StatusChange | str, source: str, delivery: str) -> Response:
        return await self._ticket_status(change, source, delivery)

    async def act(self, person: str, action: str, value: str, note: str = "") -> str:
        return await self._act(person, action, value, note)


def timed(kind: str) -> Callable[[Callable[..., Awaitable[Response]]], Callable[..., Awaitable[Response]]]:
    """Observe the endpoint's time to answer in closeloop_webhook_seconds{kind}, whatever the answer."""
    def wrap(endpoint: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        @functools.wraps(endpoint)
        async def timed_endpoint(*args: Any, **kwargs: Any) -> Response:
            started = time.perf_counter()
            try:
                return await endpoint(*args, **kwargs)
            finally:
                WEBHOOK_SECONDS.labels(kind).observe(time.perf_counter() - started)
        return timed_endpoint
    return wrap


def create_app(config: Config, client_factory: ClientFactory, *, secrets: Secrets | None = None,
               store: WebStorage | None = None, open_store: StorageOpener | None = None,
               webhooks: list[Webhook] | None = None) -> FastAPI:
    """The FastAPI app. `client_factory` is awaited once, when the forwarder or a request first needs Temporal
    (a failed connect is retried next time). `secrets` default to the environment. The store is `store`, or
    one `open_store(config.db_url)` opens on first use (closed when the app stops); without either, nothing
    can be started (503). The lifespan runs the inbox's forwarder (`app.state.forwarder`) unless `[inbox]
    forward_in` gives it to the worker: serve the app with its lifespan (uvicorn does). `webhooks` default to
    every registered plugin's
    (closeloop.integrations.registry.webhooks)."""
    secrets = Secrets() if secrets is None else secrets
    if webhooks is None:
        from closeloop.integrations.registry import webhooks as registered

        found = registered(config, secrets)
        webhooks = found.all()
    limit = config.web.max_body_bytes
    task_queue = config.temporal.task_queue
    owned: list[WebStorage] = []  # a store the app opened itself, closed when it shuts down

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if forwards:
            forwarder.start()
        try:
            yield
        finally:
            await forwarder.stop()  # rows it did not get to stay pending: the next start forwards them
            for opened in owned:
                await asyncio.to_thread(opened.close)

    app = FastAPI(title="closeloop", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    store_lock, client_lock = asyncio.Lock(), asyncio.Lock()  # a slow connect never holds up the store
    cached: list[Closeloop] = []
    stores: list[WebStorage] = [store] if store is not None else []
    has_store = store is not None or open_store is not None

    async def the_store() -> WebStorage:
        if not stores:
            if open_store is None:
                raise Reject(503, "this server has no store configured")
            async with store_lock:
                if not stores:
                    opened = await asyncio.to_thread(open_store, config.db_url)
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

    async def the_inbox() -> Inbox:
        return (await the_store()).inbox

    forwarder = Forwarder(the_inbox, client)
    forwards = has_store and config.inbox.forward_in == "web"  # else the worker does ([inbox] forward_in)
    intake = Intake(the_store)
    app.state.intake = intake
    app.state.forwarder = forwarder

    async def start(incident: Incident, via: str) -> Response:
        """Commit the incident to the inbox and answer; the forwarder starts its lifecycle."""
        await the_store()  # 503 when this app has no store
        try:
            new = await intake.receive(incident, via)
        except Exception as e:  # noqa: BLE001 - the database failed: nothing was committed, the sender retries
            log.error("inbox_write_failed", workflow_id=incident.workflow_id, via=via,
                      error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            raise Reject(503, "could not record the incident; try again later") from None
        if forwards:
            forwarder.kick()
        log.info("incident_received" if new else "incident_duplicate", workflow_id=incident.workflow_id, via=via,
                 severity=incident.severity)
        return JSONResponse({"workflow_id": incident.workflow_id, "new": new}, status_code=202)

    async def on_ticket_status(change: StatusChange | str, source: str, delivery: str) -> Response:
        response: Response = await ticket_status.apply(change, source, delivery, storage=the_store, closeloop=client)
        return response

    async def exists(workflow_id: str) -> bool:
        """Whether the incident has (or had) a lifecycle. The raw RPC: nothing to decode but the answer."""
        try:
            return await (await client()).exists(workflow_id)
        except RPCError:
            raise Reject(503, "Temporal is unavailable; try again later") from None

    async def known(source: str, external_id: str) -> bool:
        """Whether the inbox holds the incident (False when this app has no store: then Temporal is asked)."""
        if not has_store:
            return False
        inbox = (await the_store()).inbox
        return await asyncio.to_thread(inbox.entry, source, external_id) is not None

    async def act(person: str, action: str, value: str, note: str) -> str:
        """A message button's Update, as `person` (closeloop.web.actions), recorded in the audit log, done or
        refused (via the chat tool: its signed request is where it came from)."""
        outcome = "ok"
        try:
            return await actions.act(client, person, action, value, note)
        except ActionRefused as e:
            outcome = f"refused: {e}"
            raise
        finally:
            target = value[:400]
            with contextlib.suppress(Exception):
                kind_target = actions.target(action, value)[1]
                target = kind_target
            entry = AuditEntry(at=datetime.now(UTC), person=person, action=f"button.{action[:40]}", target=target,
                               via="chat-button", outcome=outcome[:500])
            try:
                await asyncio.to_thread((await the_store()).views.record_audit, entry)
            except Exception as e:  # noqa: BLE001 - the log keeps the record then
                log.error("audit_write_failed", person=person, action=action, error=type(e).__name__)

    context = _Context(limit, secrets, start, add_timeline, on_ticket_status, act)

    # ------------------------------------------------------------------ errors: always JSON

    @app.exception_handler(Reject)
    async def _reject(_: Request, e: Reject) -> JSONResponse:
        if e.status == 503:  # every 503 tells the sender when to retry
            return error_response(e.status, e.message, {"Retry-After": RETRY_AFTER, **(e.headers or {})})
        return error_response(e.status, e.message, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return error_response(e.status_code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid request")

    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, e: SQLAlchemyError) -> JSONResponse:
        """A database outage on any route is 503 with Retry-After (the sender retries), as for the ticket
        webhooks; any other database error is a 500. The driver's words go to the log only."""
        if unreachable_database(e):
            log.warning("database_unavailable", path=request.url.path, error=type(e).__name__, reason=db_reason(e))
            return error_response(503, "the database is unavailable; try again later", {"Retry-After": RETRY_AFTER})
        log.error("database_error", path=request.url.path, error=type(e).__name__, reason=db_reason(e))
        return error_response(500, "internal error")

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> Response:
        # The client left mid-request: nobody reads the answer, and it is not our error.
        log.debug("client_disconnected", path=request.url.path)
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception) -> JSONResponse:
        log.error("unexpected_error", path=request.url.path, error=f"{type(e).__name__}: {e}")
        return error_response(500, "internal error")

    # ------------------------------------------------------------------ endpoints

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    async def temporal_down() -> str | None:
        try:
            temporal = (await client()).temporal
        except Reject:
            return "temporal: unreachable"
        return await temporal_problem(temporal)

    async def database_down() -> str | None:
        if not has_store:
            return None  # this app keeps nothing: nothing to wait for
        try:
            opened = await the_store()
        except Exception as e:  # noqa: BLE001 - the store could not be opened (or migrated)
            return f"database: unreachable ({type(e).__name__})"
        return await database_problem(opened.ping)

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Ready when Temporal and the database answer (503 with which does not, e.g. for a load balancer)."""
        problems = await readiness([temporal_down, database_down])
        return JSONResponse({"ready": not problems, "problems": problems}, status_code=503 if problems else 200)

    metrics_tokens = secrets.values(ENV_METRICS_TOKEN)
    gauges: list[CollectorRegistry] = []

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus text: closeloop's counters (webhook latency, notifications...) and the lifecycle gauges
        from the store. Needs the bearer token of CLOSELOOP_METRICS_TOKEN, or, without one, loopback."""
        if not metrics_allowed(request, metrics_tokens):
            raise Reject(401, f"metrics need the bearer token of {ENV_METRICS_TOKEN}")
        if not gauges and has_store:
            opened = await the_store()
            gauges.append(registry_with(LifecycleGauges(lambda: opened.insights.live_counts(datetime.now(UTC)))))
        text = await asyncio.to_thread(exposition, gauges[0] if gauges else None)
        return Response(text, media_type=METRICS_CONTENT_TYPE)

    tokens = api_tokens(secrets.values(ENV_API_TOKENS))

    @app.post("/api/incidents")
    @timed("api")
    async def api_incident(request: Request) -> Response:
        token = check_bearer(request, tokens)
        data = json_object(await read_body(request, limit))
        check_source(token, data.setdefault("source", API_SOURCE))
        if data.get("resolved_at") is None:
            data["resolved_at"] = datetime.now(UTC)
        try:
            incident = Incident.model_validate(data)
        except ValidationError as e:
            raise Reject(422, validation_message(e)) from None
        return await start(incident, "api")

    @app.post("/api/incidents/{source}/{external_id}/resolve")
    @timed("api")
    async def api_resolve(source: str, external_id: str, request: Request) -> Response:
        token = check_bearer(request, tokens)
        check_incident_path(source, external_id)
        check_source(token, source)
        data = json_object(await read_body(request, limit), empty_ok=True)
        for key, value in (("source", source), ("external_id", external_id)):
            if key in data and data[key] != value:
                raise Reject(422, f"{key} in the body ({data[key]!r}) differs from the path ({value!r})")
            data[key] = value
        if data.get("resolved_at") is None:
            data["resolved_at"] = datetime.now(UTC)
        if "title" not in data:
            # Known already (in the inbox, or a lifecycle from before it): nothing to start, nothing more needed.
            workflow_id = postmortem_workflow_id(source, external_id)
            if "/" not in external_id and (await known(source, external_id) or await exists(workflow_id)):
                return JSONResponse({"workflow_id": workflow_id, "new": False}, status_code=202)
            raise Reject(422, f"title is required: closeloop does not know incident {source}/{external_id}")
        try:
            incident = Incident.model_validate(data)
        except ValidationError as e:
            raise Reject(422, validation_message(e)) from None
        return await start(incident, "api")

    @app.post("/api/incidents/{source}/{external_id}/notes")
    @timed("api")
    async def api_note(source: str, external_id: str, request: Request) -> Response:
        token = check_bearer(request, tokens)
        check_incident_path(source, external_id)
        check_source(token, source)
        event = note_from_json(json_object(await read_body(request, limit)))
        records = (await the_store()).records
        incident = await asyncio.to_thread(records.get_incident, source, external_id)
        if incident is None:
            raise Reject(404, f"no incident {source}/{external_id} is recorded")
        added = await add_timeline(incident, [event], notes=True)
        log.info("timeline_note_added" if added else "timeline_note_exists", incident=incident.key)
        return JSONResponse({"incident": f"{source}/{external_id}", "added": bool(added),
                             "at": event.at.isoformat()}, status_code=201 if added else 200)

    for webhook in webhooks:
        _mount(app, webhook, context)

    async def the_views() -> WebViews:
        return (await the_store()).views

    async def the_insights() -> Insights:
        return (await the_store()).insights

    mount_pages(app, config, secrets, client, the_views, the_insights)
    mount_operator(app, config, secrets, client, the_views)
    app.add_middleware(SessionMiddleware, secret_key=session_secret(secrets), session_cookie=SESSION_COOKIE,
                       max_age=int(config.web.auth.session_lifetime.total_seconds()), same_site="lax",
                       https_only=config.web.auth.secure_cookies)
    app.add_middleware(BodyDeadline, seconds=config.web.body_timeout.total_seconds())
    return app


def _mount(app: FastAPI, webhook: Webhook, context: _Context) -> None:
    kind = "incident" if isinstance(webhook, IncidentWebhook) else "ticket" if isinstance(webhook, TicketWebhook) \
        else "interaction" if isinstance(webhook, InteractionWebhook) else "other"

    route_context = copy.copy(context)  # the webhook's own body limit, from its vendor's documented maximum
    route_context.max_body_bytes = webhook.max_body_bytes

    async def receive(request: Request) -> Response:
        started = time.perf_counter()
        try:
            return await webhook.handle(request, route_context)
        finally:
            WEBHOOK_SECONDS.labels(kind).observe(time.perf_counter() - started)

    app.add_api_route(f"/webhooks/{webhook.path}", receive, methods=["POST"], name=f"{kind}_webhook_{webhook.path}")
