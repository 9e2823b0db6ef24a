"""`closeloop serve`: the HTTP app (incident API and webhooks) under uvicorn, on [web] host and port."""

from __future__ import annotations

import gc
from typing import Any

import click

from closeloop.cli._common import Context, pass_ctx


def web_app(config: Any) -> Any:
    """The app that `closeloop serve` and `closeloop dev` run (closeloop.serving.build_web_app)."""
    from closeloop.serving import build_web_app

    return build_web_app(config)


def uvicorn_config(app: Any, host: str, port: int, log_level: str, web: Any = None) -> Any:
    """uvicorn's settings for the app: closeloop's logging (no uvicorn log config), no access log, no
    Server header, the limits of `web` ([web], closeloop.config.WebSettings; its defaults when None)
    against slow and too many clients (closeloop/web/server.py), and uvloop's event loop where it is installed
    (a dependency, except on Windows; bench/webhooks.py: a third less CPU per webhook than asyncio's)."""
    import uvicorn

    from closeloop.config import WebSettings
    from closeloop.web.server import guarded_protocol, raise_open_files

    web = WebSettings() if web is None else web
    protocol = guarded_protocol(header_timeout=web.header_timeout.total_seconds(),
                                body_timeout=web.body_timeout.total_seconds(), max_connections=web.max_connections)
    raise_open_files(web.max_connections)
    return uvicorn.Config(app, host=host, port=port, log_config=None, log_level=log_level.lower(),
                          access_log=False, server_header=False, http=protocol,
                          timeout_keep_alive=web.keep_alive_timeout.total_seconds(), loop="auto")


@click.command("serve")
@click.option("--host", metavar="HOST", help="Listen address (overrides [web] host) [default: 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), help="Listen port (overrides [web] port) [default: 8080].")
@click.option("--json-logs/--console-logs", default=True, show_default=True,
              help="JSON log lines (for log shippers) or a readable console format.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@pass_ctx
def serve(obj: Context, host: str | None, port: int | None, json_logs: bool, log_level: str) -> None:
    """Serve the incident API and the webhooks over HTTP.

    \b
    Endpoints:
      GET  /healthz
      POST /api/incidents                                  (Authorization: Bearer TOKEN)
      POST /api/incidents/SOURCE/ID/resolve                (Authorization: Bearer TOKEN)
      POST /api/incidents/SOURCE/ID/notes                  (Authorization: Bearer TOKEN)
      POST /webhooks/pagerduty                             (X-PagerDuty-Signature)
      POST /webhooks/incidentio                            (Standard Webhooks signature)
      POST /webhooks/alertmanager                          (Authorization: Bearer or Basic)
      POST /webhooks/opsgenie                              (X-Closeloop-Token)
      POST /webhooks/jira                                  (X-Hub-Signature)
      POST /webhooks/github                                (X-Hub-Signature-256)

    Secrets come only from the environment: CLOSELOOP_API_TOKENS, CLOSELOOP_PAGERDUTY_SECRETS,
    CLOSELOOP_INCIDENTIO_SECRETS, CLOSELOOP_ALERTMANAGER_TOKENS or CLOSELOOP_ALERTMANAGER_BASIC,
    CLOSELOOP_OPSGENIE_TOKENS, CLOSELOOP_JIRA_WEBHOOK_SECRET and CLOSELOOP_GITHUB_WEBHOOK_SECRET
    (comma-separated; several at once during a rotation). Without one, its
    endpoints answer 401 with a JSON reason. `closeloop dev` serves the same app.

    Against slow and too many clients, from [web]: header_timeout (10s: the request line and headers, else
    408), body_timeout (30s: the whole body after them, else 408), keep_alive_timeout (5s: an idle
    connection is closed) and max_connections (2048: more get 503 at once). Put a reverse proxy in front
    for TLS (deploy/reverse-proxy.md).

    An incident is answered 202 once it is committed to the store's inbox, without waiting for Temporal;
    the server's forwarder starts the lifecycles and retries while Temporal is down (`closeloop inbox`
    lists what has not started yet).

    \b
    Examples:
      CLOSELOOP_API_TOKENS=s3cret closeloop serve
      closeloop serve --host 0.0.0.0 --port 9000
    """
    import structlog
    import uvicorn

    from closeloop import logging as closeloop_logging

    config = obj.config()
    closeloop_logging.configure(log_level, json=json_logs)
    app = web_app(config)
    bind_host = host or config.web.host
    bind_port = port or config.web.port
    structlog.get_logger("closeloop.web").info("serving", host=bind_host, port=bind_port,
                                               temporal=config.temporal.address)
    server = uvicorn.Server(uvicorn_config(app, bind_host, bind_port, log_level, config.web))
    # What start-up made (modules, the app) lives as long as the process: out of the collector's way, so a full
    # collection under many open connections does not pause the event loop for as long.
    gc.freeze()
    server.run()

COMMANDS = [serve]
