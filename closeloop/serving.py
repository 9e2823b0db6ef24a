"""Builds the web app that `closeloop serve` and `closeloop dev` run (a composition root, like closeloop.worker):
the registered plugins' webhooks, the store opened on first use, secrets from the environment only (one
warning for each endpoint whose secret is unset: it answers 401 with a JSON reason until it is), and a Temporal
client connected on the first request that needs one."""

from __future__ import annotations

import structlog
from fastapi import FastAPI
from temporalio.client import Client

from closeloop.client import connect
from closeloop.config import Config
from closeloop.integrations.registry import webhooks
from closeloop.secrets import ENV_API_TOKENS, Secrets
from closeloop.store.store import Store
from closeloop.telemetry import tracing_interceptors
from closeloop.web.app import create_app

log = structlog.get_logger("closeloop.web")


def build_web_app(config: Config, *, secrets: Secrets | None = None) -> FastAPI:
    secrets = Secrets() if secrets is None else secrets
    found = webhooks(config, secrets)
    hooks = found.all()
    if not secrets.values(ENV_API_TOKENS):
        log.warning("no_api_tokens", hint=f"set {ENV_API_TOKENS}; /api/... answers 401 until then")
    for hook in hooks:
        if hook.secret_names and not any(secrets.values(name) for name in hook.secret_names):
            log.warning("webhook_secret_unset", webhook=f"/webhooks/{hook.path}",
                        hint=f"set {' or '.join(hook.secret_names)}; /webhooks/{hook.path} answers 401 until then")

    async def client_factory() -> Client:
        # traced like the worker's when [telemetry] tracing is on: the lifecycles the web app starts (the inbox's
        # forwarder, people's actions) begin their traces here
        return await connect(config.temporal, interceptors=tracing_interceptors(config.telemetry))

    def open_store(url: str) -> Store:
        return Store(url, **config.store.pool)

    return create_app(config, client_factory, secrets=secrets, open_store=open_store, webhooks=hooks)
