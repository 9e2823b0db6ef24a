"""`closeloop report effectiveness`: the effectiveness review on demand, as Markdown, HTML or JSON, from the
store the worker writes (here filled through the store's own record methods)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from closeloop.models import Incident, Verdict
from closeloop.store.store import Store
from tests.closeloop.cli.test_cli_errors import invoke, one_line_error
from tests.closeloop.store.helpers import item, lifecycle
from tests.temporal_env import make_config

NOW = datetime.now(UTC)


def filled(tmp_path: Path) -> Path:
    config = make_config(tmp_path)
    store = Store(config.db_url)
    try:
        a = lifecycle(store, "R1", "Checkout returns 500s", resolved=NOW - timedelta(days=60))
        item(store, a, 1, owner="bob", due=NOW - timedelta(days=40), completed=NOW - timedelta(days=45),
             verdict=Verdict.effective)
        item(store, a, 2, owner="bob", kind="detect", due=NOW - timedelta(days=3))  # overdue
        b = lifecycle(store, "R2", "Checkout times out", resolved=NOW - timedelta(days=10))
        later = Incident(source="api", external_id="R2", title="Checkout times out", services=["checkout"],
                         resolved_at=NOW - timedelta(days=10))
        store.records.link_recurrences(b, later, within=timedelta(days=90), at=NOW - timedelta(days=10))
    finally:
        store.close()
    return tmp_path / "closeloop.toml"


def test_the_report_as_json_markdown_and_html(tmp_path: Path) -> None:
    config = filled(tmp_path)
    result = invoke(["report", "effectiveness", "--since", "90d", "--json"], config)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["items_done"], data["verdicts"]["effective"], data["verdicts"]["rate"]) == (1, 1, 1.0)
    assert data["overdue_items"] == 1 and data["overdue_by_age"]["1-7 days"] == 1
    assert [(r["item"]["title"], r["recurred_in"]) for r in data["recurred"]] == [("item 1", ["postmortem/api/R2"])]
    assert [(f["service"], f["incidents"]) for f in data["failing_services"]] == [("checkout", 2)]
    # a shorter period: the item was done before it, the recurrence was found in it
    short = json.loads(invoke(["report", "effectiveness", "--since", "30d", "--json"], config).stdout)
    assert (short["items_done"], len(short["recurred"]), short["failing_services"]) == (0, 1, [])

    markdown = invoke(["report", "effectiveness", "--since", "90d"], config)
    assert markdown.exit_code == 0 and markdown.stdout.startswith("# Effectiveness review: ")
    assert "| item 1 | bob | checkout | prevent | effective | postmortem/api/R2 |" in markdown.stdout

    out = tmp_path / "review.html"
    written = invoke(["report", "effectiveness", "--html", "-o", str(out)], config)
    assert written.exit_code == 0 and f"wrote {out}" in written.stderr
    assert out.read_text().startswith("<!DOCTYPE html>") and "<td>item 1</td>" in out.read_text()


def test_bad_options_are_one_line_and_exit_2(tmp_path: Path) -> None:
    config = filled(tmp_path)
    one_line_error(invoke(["report", "effectiveness", "--since", "soon"], config), 2, "invalid duration 'soon'")
    one_line_error(invoke(["report", "effectiveness", "--json", "--html"], config), 2, "choose one")
    one_line_error(invoke(["report", "effectiveness", "--until", "yesterday"], config), 2, "ISO 8601")
    one_line_error(invoke(["report", "effectiveness", "-o", str(tmp_path / "no" / "dir" / "r.md")], config), 2,
                   "cannot write")
