"""`closeloop serve`: the HTTP app (incident API and webhooks) under uvicorn, on [web] host and port."""

from __future__ import annotations

from typing import Any

import click

from closeloop.cli._common import Context, pass_ctx


# (field of WebSecrets, log event, what happens without it): one warning per unset secret at start.
_SECRET_HINTS = [
    (("api_tokens",), "no_api_tokens", "set CLOSELOOP_API_TOKENS; /api/... answers 401 until then"),
    (("pagerduty_secrets",), "no_pagerduty_secrets",
     "set CLOSELOOP_PAGERDUTY_SECRETS; /webhooks/pagerduty answers 401"),
    (("incidentio_secrets",), "no_incidentio_secrets",
     "set CLOSELOOP_INCIDENTIO_SECRETS; /webhooks/incidentio answers 401"),
    (("alertmanager_tokens", "alertmanager_basic"), "no_alertmanager_credentials",
     "set CLOSELOOP_ALERTMANAGER_TOKENS or CLOSELOOP_ALERTMANAGER_BASIC; /webhooks/alertmanager answers 401"),
    (("opsgenie_tokens",), "no_opsgenie_tokens", "set CLOSELOOP_OPSGENIE_TOKENS; /webhooks/opsgenie answers 401"),
    (("jira_webhook_secrets",), "no_jira_webhook_secret",
     "set CLOSELOOP_JIRA_WEBHOOK_SECRET; /webhooks/jira answers 401 (the reconciliation sweep still syncs)"),
    (("github_webhook_secrets",), "no_github_webhook_secret",
     "set CLOSELOOP_GITHUB_WEBHOOK_SECRET; /webhooks/github answers 401 (the reconciliation sweep still syncs)"),
]


def web_app(config: Any) -> Any:
    """The app that `closeloop serve` and `closeloop dev` run: secrets from the environment only (a warning
    for each one that is unset: its endpoints answer 401 with a JSON reason until it is), and a Temporal
    client connected on the first request that needs one."""
    import structlog

    from closeloop.client import connect
    from closeloop.web.app import create_app
    from closeloop.web.settings import load_secrets

    secrets = load_secrets()
    log = structlog.get_logger("closeloop.web")
    for names, event, hint in _SECRET_HINTS:
        if not any(getattr(secrets, name) for name in names):
            log.warning(event, hint=hint)

    async def client_factory() -> Any:
        return await connect(config.temporal)

    return create_app(config, client_factory, secrets=secrets)


def uvicorn_config(app: Any, host: str, port: int, log_level: str) -> Any:
    """uvicorn's settings for the app: closeloop's logging (no uvicorn log config), no access log, no
    Server header."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_config=None, log_level=log_level.lower(),
                          access_log=False, server_header=False)


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

    \b
    Examples:
      CLOSELOOP_API_TOKENS=s3cret closeloop serve
      closeloop serve --host 0.0.0.0 --port 9000
    """
    import uvicorn
    import structlog

    from closeloop import logging as closeloop_logging

    config = obj.config()
    closeloop_logging.configure(log_level, json=json_logs)
    app = web_app(config)
    bind_host = host or config.web.host
    bind_port = port or config.web.port
    structlog.get_logger("closeloop.web").info("serving", host=bind_host, port=bind_port,
                                               temporal=config.temporal.address)
    uvicorn.Server(uvicorn_config(app, bind_host, bind_port, log_level)).run()

COMMANDS = [serve]
