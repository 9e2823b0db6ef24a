"""Fixtures for the web app: an httpx client on the ASGI app, wired to the `app` fixture's Temporal client,
worker and task queue. Every lifecycle a request starts is handed to `app.handles` for cleanup."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI

from closeloop.config import load_config
from closeloop.secrets import Secrets
from closeloop.web.app import create_app
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.temporal_env import App

SECRET_NAMES = {"api_tokens": "CLOSELOOP_API_TOKENS", "pagerduty_secrets": "CLOSELOOP_PAGERDUTY_SECRETS",
                "incidentio_secrets": "CLOSELOOP_INCIDENTIO_SECRETS",
                "alertmanager_tokens": "CLOSELOOP_ALERTMANAGER_TOKENS",
                "alertmanager_basic": "CLOSELOOP_ALERTMANAGER_BASIC", "opsgenie_tokens": "CLOSELOOP_OPSGENIE_TOKENS",
                "jira_webhook_secrets": "CLOSELOOP_JIRA_WEBHOOK_SECRET",
                "github_webhook_secrets": "CLOSELOOP_GITHUB_WEBHOOK_SECRET"}


def secrets_of(**values: tuple[str, ...]) -> Secrets:
    """The web app's secrets as the environment would hold them (comma-separated values per variable)."""
    return Secrets({SECRET_NAMES[key]: ",".join(given) for key, given in values.items()})


TOKENS = ("tok-first-0123456789", "tok-second-abcdef")
PD_SECRETS = ("pd-secret-old", "pd-secret-new")
IIO_SECRETS = ("whsec_" + base64.b64encode(b"incident-io-key-old-0123456789ab").decode(),
               "whsec_" + base64.b64encode(b"incident-io-key-new-0123456789ab").decode())
AM_TOKENS = ("am-token-0123456789",)
AM_BASIC = ("alertmanager:s3cret-pass", "other:pw")
OG_TOKENS = ("og-token-0123456789", "og-token-rotated")
ALL_SECRETS = secrets_of(api_tokens=TOKENS, pagerduty_secrets=PD_SECRETS, incidentio_secrets=IIO_SECRETS,
                         alertmanager_tokens=AM_TOKENS, alertmanager_basic=AM_BASIC, opsgenie_tokens=OG_TOKENS)


def svix_sign(msg_id: str, timestamp: int | str, body: bytes, secret: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def iio_headers(body: bytes, secret: str = IIO_SECRETS[0], *, msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
                timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": svix_sign(msg_id, ts, body, secret)}


def basic(user_pass: str) -> str:
    return "Basic " + base64.b64encode(user_pass.encode()).decode()


def sign(body: bytes, secret: str) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def pd_envelope(incident_id: str = "PGR0VU2", event_type: str = "incident.resolved", **data: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": incident_id,
        "type": "incident",
        "self": f"https://api.pagerduty.com/incidents/{incident_id}",
        "html_url": f"https://acme.pagerduty.com/incidents/{incident_id}",
        "number": 2,
        "status": "resolved",
        "incident_key": "d3640fbd41094207a1c11e58e46b1662",
        "created_at": "2020-04-09T15:16:27Z",
        "title": "A little bump in the road",
        "service": {"id": "PF9KMXH", "summary": "checkout", "type": "service_reference"},
        "priority": {"id": "PSO75BM", "summary": "P1", "type": "priority_reference"},
        "urgency": "high",
    }
    base.update(data)
    return {
        "event": {
            "id": "5ac64822-4adc-4fda-ade0-410becf0de4f",
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2020-10-02T18:45:22.169Z",
            "agent": None,
            "client": {"name": "PagerDuty"},
            "data": base,
        }
    }


@dataclass
class Web:
    http: httpx.AsyncClient
    app: App

    def track(self, response: httpx.Response) -> None:
        """Hand a started lifecycle to the app fixture's cleanup."""
        if response.status_code == 202 and "workflow_id" in response.json():
            wid = response.json()["workflow_id"]
            if wid not in {h.id for h in self.app.handles}:
                self.app.handles.append(self.app.client.get_workflow_handle(wid))

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.post(url, **kwargs)
        self.track(response)
        return response

    async def pagerduty(self, payload: Any, *, secret: str = PD_SECRETS[0], body: bytes | None = None,
                        signature: str | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        raw = body if body is not None else json.dumps(payload).encode()
        sig = signature if signature is not None else sign(raw, secret)
        return await self.post("/webhooks/pagerduty", content=raw,
                               headers={"Content-Type": "application/json", "X-PagerDuty-Signature": sig,
                                        **(headers or {})})

    async def raw(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.post(url, content=body, headers={"Content-Type": "application/json", **headers})

    async def incidentio(self, payload: Any, *, body: bytes | None = None, secret: str = IIO_SECRETS[0],
                         headers: dict[str, str] | None = None, timestamp: int | None = None) -> httpx.Response:
        raw = body if body is not None else json.dumps(payload).encode()
        signed = iio_headers(raw, secret, timestamp=timestamp)
        return await self.raw("/webhooks/incidentio", raw, {**signed, **(headers or {})})

    async def alertmanager(self, payload: Any, *, body: bytes | None = None,
                           auth: str | None = f"Bearer {AM_TOKENS[0]}") -> httpx.Response:
        raw = body if body is not None else json.dumps(payload).encode()
        return await self.raw("/webhooks/alertmanager", raw, {"Authorization": auth} if auth is not None else {})

    async def opsgenie(self, payload: Any, *, body: bytes | None = None,
                       token: str | None = OG_TOKENS[0]) -> httpx.Response:
        raw = body if body is not None else json.dumps(payload).encode()
        return await self.raw("/webhooks/opsgenie", raw, {"X-Closeloop-Token": token} if token is not None else {})

    async def api(self, url: str, payload: Any = None, *, token: str | None = TOKENS[0]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        kwargs: dict[str, Any] = {"json": payload} if payload is not None else {}
        return await self.post(url, headers=headers, **kwargs)

    async def state(self, workflow_id: str) -> Any:
        handle = self.app.client.get_workflow_handle_for(PostmortemWorkflow.run, workflow_id)
        return await self.app.wait_for(handle, lambda s: s is not None)


def webhook_limit(path: str) -> int:
    """The body limit of `POST /webhooks/<path>`: its vendor's documented maximum (Webhook.max_body_bytes)."""
    from closeloop.integrations.registry import webhooks

    found = webhooks(load_config(None, env={}))
    return next(w.max_body_bytes for w in [*found.incident, *found.ticket] if w.path == path)


class LifespanClient(httpx.AsyncClient):
    """An httpx client on an ASGI app that runs the app's lifespan around its use, as uvicorn does (the
    inbox's forwarder runs in it): `async with LifespanClient(app) as http: ...`."""

    def __init__(self, app: FastAPI, base_url: str = "http://closeloop.test") -> None:
        super().__init__(transport=httpx.ASGITransport(app=app), base_url=base_url)
        self.app = app
        self._lifespan: AbstractAsyncContextManager[Any] | None = None

    async def __aenter__(self) -> LifespanClient:
        await super().__aenter__()
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._lifespan is not None:
            await self._lifespan.__aexit__(*exc)
        await super().__aexit__(*exc)


def make_web(app: App, secrets: Secrets | None = None, max_body_bytes: int | None = None) -> httpx.AsyncClient:
    config = app.config
    if max_body_bytes is not None:
        config = config.model_copy(update={"web": config.web.model_copy(update={"max_body_bytes": max_body_bytes})})

    async def client_factory() -> Any:
        return app.client

    web_app = create_app(config, client_factory, secrets=secrets or ALL_SECRETS, store=app.store)
    return LifespanClient(web_app)


@pytest_asyncio.fixture
async def web(app: App) -> AsyncIterator[Web]:
    async with make_web(app) as http:
        yield Web(http=http, app=app)
