"""`closeloop inbox`: the operator's view of accepted incidents whose lifecycle has not started (pending) or
never will (refused, with the reason), read from the store."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from closeloop.config import load_config
from closeloop.store.store import Store
from tests.closeloop.cli.test_cli_errors import invoke
from tests.temporal_env import incident, make_config


def test_inbox_lists_pending_and_refused_rows(tmp_path: Path) -> None:
    make_config(tmp_path)
    config_path = tmp_path / "closeloop.toml"
    result = invoke(["inbox"], config_path)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "nothing pending or refused (0 forwarded)"

    store = Store(load_config(config_path, env={}).db_url)
    try:
        for n in range(3):
            store.inbox.receive(incident(f"INC-{n}", title=f"Incident {n}"), "api")
        ok, bad, _waiting = store.inbox.claim(3, timedelta(seconds=60))
        store.inbox.forwarded([ok.id])
        store.inbox.refuse(bad.id, "Temporal refused the lifecycle: search attribute value size 3004 exceeds")
    finally:
        store.close()

    result = invoke(["inbox", "--json"], config_path)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["incident"], r["state"], r["attempts"]) for r in rows] == [("api/INC-1", "refused", 1),
                                                                         ("api/INC-2", "pending", 0)]
    assert "exceeds" in rows[0]["last_error"]
    result = invoke(["inbox", "--state", "refused"], config_path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["INCIDENT", "STATE", "VIA", "RECEIVED", "TRIES", "LAST", "ERROR"]
    assert len(lines) == 2 and lines[1].startswith("api/INC-1") and "refused" in lines[1]
