"""`closeloop serve`: the HTTP app (incident API and webhooks) under uvicorn, on [web] host and port."""

from __future__ import annotations

from typing import Any

import click

from closeloop.cli._common import Context, pass_ctx


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
      POST /webhooks/pagerduty                             (X-PagerDuty-Signature)
      POST /webhooks/jira                                  (X-Hub-Signature, CLOSELOOP_JIRA_WEBHOOK_SECRET)
      POST /webhooks/github                                (X-Hub-Signature-256, CLOSELOOP_GITHUB_WEBHOOK_SECRET)

    Secrets come only from the environment: CLOSELOOP_API_TOKENS and CLOSELOOP_PAGERDUTY_SECRETS
    (comma-separated; several at once during a rotation). Without them those endpoints answer 401.

    \b
    Examples:
      CLOSELOOP_API_TOKENS=s3cret closeloop serve
      closeloop serve --host 0.0.0.0 --port 9000
    """
    import uvicorn
    import structlog

    from closeloop import logging as closeloop_logging
    from closeloop.client import connect
    from closeloop.web.app import create_app
    from closeloop.web.settings import load_secrets

    config = obj.config()
    closeloop_logging.configure(log_level, json=json_logs)
    secrets = load_secrets()
    log = structlog.get_logger("closeloop.web")
    if not secrets.api_tokens:
        log.warning("no_api_tokens", hint="set CLOSELOOP_API_TOKENS; /api/... answers 401 until then")
    if not secrets.pagerduty_secrets:
        log.warning("no_pagerduty_secrets", hint="set CLOSELOOP_PAGERDUTY_SECRETS; /webhooks/pagerduty answers 401")

    async def client_factory() -> Any:
        return await connect(config)

    app = create_app(config, client_factory, secrets=secrets)
    bind_host = host or config.web.host
    bind_port = port or config.web.port
    log.info("serving", host=bind_host, port=bind_port, temporal=config.temporal.address)
    uvicorn.run(app, host=bind_host, port=bind_port, log_config=None, log_level=log_level.lower(),
                access_log=False, server_header=False)


COMMANDS = [serve]
