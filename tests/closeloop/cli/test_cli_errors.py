"""The CLI on bad input: every failure is one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from closeloop.cli.main import cli
from tests.temporal_env import make_config

# Nothing from the developer's shell may leak into these runs.
CLEAN_ENV = {k: None for k in ("CLOSELOOP_CONFIG", "CLOSELOOP_TEMPORAL_ADDRESS", "CLOSELOOP_NAMESPACE",
                               "CLOSELOOP_TASK_QUEUE", "CLOSELOOP_DB_URL", "CLOSELOOP_DATA_DIR", "CLOSELOOP_DEBUG")}
UNREACHABLE = "127.0.0.1:1"


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    make_config(tmp_path)
    return tmp_path / "closeloop.toml"


def invoke(args: list[str], config: Path | None = None, input: str | None = None) -> Result:
    pre = ["--config", str(config)] if config else []
    return CliRunner().invoke(cli, [*pre, *args], env=CLEAN_ENV, input=input)


def one_line_error(result: Result, code: int, *fragments: str) -> str:
    out = result.output
    assert result.exit_code == code, out
    assert "Traceback" not in out
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("closeloop: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_malformed_json_incident_file(tmp_path: Path, config_path: Path) -> None:
    bad = tmp_path / "incident.json"
    bad.write_text('{"source": "api", "external_id": "INC-1",')
    one_line_error(invoke(["incident", "resolve", "--file", str(bad)], config_path), 2, "not valid JSON",
                   str(bad))


def test_malformed_json_draft_file(tmp_path: Path, config_path: Path) -> None:
    bad = tmp_path / "draft.json"
    bad.write_text("{summary: nope}")
    one_line_error(invoke(["draft", "submit", "api/INC-1", "--as", "alice", "--file", str(bad)], config_path), 2,
                   "not valid JSON")


def test_missing_incident_file(tmp_path: Path, config_path: Path) -> None:
    one_line_error(invoke(["incident", "resolve", "--file", str(tmp_path / "nope.json")], config_path), 2,
                   "cannot read", "nope.json")


def test_missing_title(config_path: Path) -> None:
    one_line_error(invoke(["incident", "resolve", "--id", "INC-1"], config_path), 2, "--title")


def test_missing_field_in_file(tmp_path: Path, config_path: Path) -> None:
    f = tmp_path / "incident.json"
    f.write_text(json.dumps({"source": "api", "external_id": "INC-1"}))
    one_line_error(invoke(["incident", "resolve", "--file", str(f)], config_path), 2, "title")


def test_invalid_field_names_the_flag(config_path: Path) -> None:
    line = one_line_error(invoke(["incident", "resolve", "--source", "Page Duty", "--id", "INC-1", "--title", "x"],
                                 config_path), 2, "invalid incident", "source", "--source")
    assert "lowercase" in line


def test_unknown_field_in_file(tmp_path: Path, config_path: Path) -> None:
    f = tmp_path / "incident.json"
    f.write_text(json.dumps({"source": "api", "external_id": "INC-1", "title": "x", "colour": "red"}))
    one_line_error(invoke(["incident", "resolve", "--file", str(f)], config_path), 2, "colour")


def test_incident_without_severity_is_fine(config_path: Path) -> None:
    result = invoke(["incident", "resolve", "--source", "api", "--id", "INC-7", "--title", "Slow search",
                     "--service", "search", "--link", "Dash=https://grafana.example/d/1?x=1", "--dry-run"],
                    config_path)
    assert result.exit_code == 0, result.output
    incident = json.loads(result.stdout)
    assert incident["severity"] == "SEV3"
    assert incident["resolved_at"]  # defaults to now
    assert incident["links"] == [{"title": "Dash", "url": "https://grafana.example/d/1?x=1"}]


def test_incident_from_stdin(config_path: Path) -> None:
    result = invoke(["incident", "resolve", "--file", "-", "--severity", "SEV1", "--dry-run"], config_path,
                    input=json.dumps({"source": "pagerduty", "external_id": "P123", "title": "DB down"}))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["severity"] == "SEV1"


def test_bad_time(config_path: Path) -> None:
    one_line_error(invoke(["incident", "resolve", "--id", "INC-1", "--title", "x", "--started-at", "yesterday"],
                          config_path), 2, "--started-at", "ISO 8601")


def test_bad_duration(config_path: Path) -> None:
    one_line_error(invoke(["draft", "extend", "api/INC-1", "--as", "alice", "--by", "2x", "--reason", "r"],
                          config_path), 2, "--by", "invalid duration '2x'")


def test_bad_item_spec(config_path: Path) -> None:
    one_line_error(invoke(["draft", "submit", "api/INC-1", "--as", "alice", "--summary", "s", "--item", "just a title"],
                          config_path), 2, "--item")


def test_bad_item_priority(config_path: Path) -> None:
    one_line_error(invoke(["draft", "submit", "api/INC-1", "--as", "alice", "--summary", "s", "--item", "t|bob|P9"],
                          config_path), 2, "invalid draft", "priority")


def test_draft_by_mismatch(tmp_path: Path, config_path: Path) -> None:
    f = tmp_path / "draft.json"
    f.write_text(json.dumps({"by": "bob", "summary": "s"}))
    one_line_error(invoke(["draft", "submit", "api/INC-1", "--as", "alice", "--file", str(f)], config_path), 2,
                   "--as")


def test_unknown_option(config_path: Path) -> None:
    one_line_error(invoke(["status", "--bogus"], config_path), 2, "No such option", "--bogus")


def test_unknown_command(config_path: Path) -> None:
    one_line_error(invoke(["frobnicate"], config_path), 2, "frobnicate")


def test_missing_required_option(config_path: Path) -> None:
    one_line_error(invoke(["review", "request-changes", "api/INC-1", "--as", "bob"], config_path), 2, "--comment")


def test_verdict_needs_a_choice(config_path: Path) -> None:
    one_line_error(invoke(["item", "verdict", "api/INC-1/item-1", "--as", "bob"], config_path), 2, "--effective")


@pytest.mark.parametrize("args", [["status", "INC-1"], ["item", "complete", "api/INC-1", "--as", "bob"],
                                  ["notifications", "a/b/c/d"]])
def test_bad_ids(config_path: Path, args: list[str]) -> None:
    one_line_error(invoke(args, config_path), 2, "bad ")


def test_broken_toml(tmp_path: Path) -> None:
    bad = tmp_path / "closeloop.toml"
    bad.write_text("[people.alice\nname = 'A'\n")
    one_line_error(invoke(["config", "check"], bad), 2, "not valid TOML", str(bad))


def test_config_semantic_error(tmp_path: Path) -> None:
    bad = tmp_path / "closeloop.toml"
    bad.write_text('default_owner = "zed"\n[people.alice]\nname = "A"\nemail = "a@example.com"\n')
    one_line_error(invoke(["config", "check"], bad), 2, "default_owner", "zed")


def test_config_missing_file(tmp_path: Path) -> None:
    one_line_error(invoke(["config", "check"], tmp_path / "nope.toml"), 2, "cannot read config")


def test_config_check_ok(config_path: Path) -> None:
    result = invoke(["config", "check"], config_path)
    assert result.exit_code == 0, result.output
    assert f"ok: {config_path}: 5 people, 1 services" in result.stdout
    result = invoke(["config", "check", "--json"], config_path)
    assert json.loads(result.stdout)["people"] == 5


def test_unreachable_temporal(config_path: Path) -> None:
    one_line_error(invoke(["--address", UNREACHABLE, "status", "api/INC-1"], config_path), 3,
                   f"cannot reach Temporal at {UNREACHABLE}", "closeloop dev")
    one_line_error(invoke(["--address", UNREACHABLE, "incident", "resolve", "--id", "INC-1", "--title", "x"],
                          config_path), 3, "cannot reach Temporal")


def test_unknown_ticket(config_path: Path) -> None:
    one_line_error(invoke(["ticket", "close", "LOCAL-99"], config_path), 1, "no ticket LOCAL-99")


def test_note_needs_a_recorded_incident(config_path: Path) -> None:
    one_line_error(invoke(["timeline", "note", "api:INC-404", "--text", "x"], config_path), 1,
                   "no incident api:INC-404")


def test_busy_block(config_path: Path) -> None:
    one_line_error(invoke(["calendar", "busy", "zed", "--from", "2025-01-01T09:00Z", "--to", "2025-01-01T10:00Z"],
                          config_path), 2, "unknown person 'zed'")
    one_line_error(invoke(["calendar", "busy", "alice", "--from", "2025-01-01T10:00Z", "--to", "2025-01-01T09:00Z"],
                          config_path), 2, "--to")
    ok = invoke(["calendar", "busy", "alice", "--from", "2025-01-01T09:00Z", "--to", "2025-01-01T10:00Z"], config_path)
    assert ok.exit_code == 0, ok.output


def test_local_listings_on_an_empty_store(config_path: Path) -> None:
    for args in (["tickets", "--json"], ["notifications", "--json"]):
        result = invoke(args, config_path)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == []
    assert invoke(["db", "upgrade"], config_path).exit_code == 0


def test_every_command_has_help_with_an_example() -> None:
    import click

    def walk(cmd: click.Command, path: list[str]) -> list[list[str]]:
        out = [path]
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                out += walk(sub, [*path, name])
        return out

    for path in walk(cli, []):
        result = CliRunner().invoke(cli, [*path, "--help"], env=CLEAN_ENV)
        assert result.exit_code == 0, (path, result.output)
        assert "Example" in result.output, path


def test_db_prune_deletes_what_is_past_retention_and_a_dry_run_only_counts(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from closeloop.store.store import Store
    from closeloop.store.tables import WebhookDeliveryRow

    config = make_config(tmp_path)
    store = Store(config.db_url)
    try:
        for delivery in ("old-1", "old-2", "young"):
            store.deliveries.record_delivery("github", delivery)
        with store.db.session() as s:
            s.execute(update(WebhookDeliveryRow).where(WebhookDeliveryRow.delivery_id.startswith("old-"))
                      .values(received_at=datetime.now(UTC) - timedelta(days=31)))
        path = tmp_path / "closeloop.toml"
        dry = invoke(["db", "prune", "--dry-run", "--json"], path)
        assert dry.exit_code == 0, dry.output
        counted = json.loads(dry.stdout)
        assert counted["dry_run"] is True and counted["deleted"]["webhook_deliveries"] == 2
        assert store.deliveries.delivery_seen("github", "old-1")  # nothing deleted
        run = invoke(["db", "prune"], path)
        assert run.exit_code == 0 and run.stdout.startswith("deleted 2 webhook_deliveries"), run.output
        assert not store.deliveries.delivery_seen("github", "old-1")
        assert store.deliveries.delivery_seen("github", "young")
        assert invoke(["db", "prune"], path).stdout.startswith("deleted nothing")
    finally:
        store.close()


def test_db_prune_on_an_unreachable_database_is_one_line(config_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(config_path), "db", "prune"],
                                env={**CLEAN_ENV, "CLOSELOOP_DB_URL": "postgresql+psycopg://nobody@127.0.0.1:1/x"})
    one_line_error(result, 1, "failed")
