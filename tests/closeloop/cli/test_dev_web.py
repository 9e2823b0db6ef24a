"""`closeloop dev` and the web app, without starting a Temporal server: the web port is claimed before
anything starts (a busy one is a one-line error), its host and port come from [web] or the environment,
and `dev` builds the same app as `serve` (one warning per unset secret, never a value).
tests/devserver/test_dev_web.py runs the whole thing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from structlog.testing import capture_logs

from closeloop.cli.main import cli
from closeloop.cli.serve import web_app
from closeloop.config import ConfigError, load_config
from tests.temporal_env import make_config

CLEAN_ENV = {k: None for k in ("CLOSELOOP_CONFIG", "CLOSELOOP_TEMPORAL_ADDRESS", "CLOSELOOP_NAMESPACE",
                               "CLOSELOOP_TASK_QUEUE", "CLOSELOOP_DB_URL", "CLOSELOOP_DATA_DIR", "CLOSELOOP_DEBUG",
                               "CLOSELOOP_UI_PORT", "CLOSELOOP_WEB_HOST", "CLOSELOOP_WEB_PORT")}
SECRET_VARS = ("CLOSELOOP_API_TOKENS", "CLOSELOOP_PAGERDUTY_SECRETS", "CLOSELOOP_INCIDENTIO_SECRETS",
               "CLOSELOOP_ALERTMANAGER_TOKENS", "CLOSELOOP_ALERTMANAGER_BASIC", "CLOSELOOP_OPSGENIE_TOKENS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dev_refuses_a_busy_web_port_before_starting_anything(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        web_port = busy.getsockname()[1]
        data = tmp_path / "dev-data"
        result = CliRunner().invoke(cli, ["--config", config.source, "dev", "--data-dir", str(data), "--port",
                                          str(_free_port()), "--ui-port", str(_free_port()), "--web-port",
                                          str(web_port)], env=CLEAN_ENV)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"closeloop: the web port 127.0.0.1:{web_port} is not available (Address already in use): "
                     "stop what uses it, or use --web-port (or --no-web)"]
    assert "Traceback" not in result.output
    assert not data.exists()  # nothing was started: no store, no dev server state


def test_dev_help_names_the_web_options() -> None:
    result = CliRunner().invoke(cli, ["dev", "--help"], env=CLEAN_ENV)
    assert result.exit_code == 0, result.output
    assert "--no-web" in result.output and "--web-port" in result.output


def test_web_host_and_port_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[web]\nport = 9000\n")
    assert (load_config(path, env={}).web.host, load_config(path, env={}).web.port) == ("127.0.0.1", 9000)
    web = load_config(path, env={"CLOSELOOP_WEB_HOST": "0.0.0.0", "CLOSELOOP_WEB_PORT": "9123"}).web
    assert (web.host, web.port) == ("0.0.0.0", 9123)
    with pytest.raises(ConfigError, match="web.port"):
        load_config(path, env={"CLOSELOOP_WEB_PORT": "http"})


def test_the_app_warns_once_per_unset_secret_and_never_shows_one(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOSELOOP_PAGERDUTY_SECRETS", "pd-very-secret-value")
    monkeypatch.setenv("CLOSELOOP_ALERTMANAGER_BASIC", "am:also-secret")
    # the ticket webhooks' secrets (added with the Jira/GitHub webhooks) are set: the warnings asserted are the above
    monkeypatch.setenv("CLOSELOOP_JIRA_WEBHOOK_SECRET", "jira-hook-secret-value")
    monkeypatch.setenv("CLOSELOOP_GITHUB_WEBHOOK_SECRET", "gh-hook-secret-value")
    monkeypatch.setenv("CLOSELOOP_SLACK_SIGNING_SECRET", "slack-signing-secret-value")  # Slack's buttons, likewise
    monkeypatch.setenv("CLOSELOOP_SESSION_SECRET", "session-key-secret-value")  # the pages' sessions, likewise
    with capture_logs() as logs:
        app = web_app(make_config(tmp_path))
    events = sorted((entry["event"], entry.get("webhook", "")) for entry in logs)
    assert events == [("no_api_tokens", ""), ("webhook_secret_unset", "/webhooks/incidentio"),
                      ("webhook_secret_unset", "/webhooks/opsgenie")]
    assert not any(secret in repr(e) for e in logs
                   for secret in ("pd-very-secret-value", "also-secret", "jira-hook-secret-value",
                                  "gh-hook-secret-value", "slack-signing-secret-value", "session-key-secret-value"))
    assert {route.path for route in app.routes} >= {"/healthz", "/webhooks/pagerduty", "/api/incidents"}
