"""POST /webhooks/opsgenie: the Close action of an alert, authenticated by the X-Closeloop-Token shared
secret; every other action is ignored."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.closeloop.web.conftest import OG_TOKENS, Web, make_web, secrets_of, webhook_limit
from tests.temporal_env import App

ALERT_ID = "70413a06-38d6-4c85-92b8-5ebc900d42e2"
WID = f"postmortem/opsgenie/{ALERT_ID}"


def og_event(alert_id: str = ALERT_ID, action: str = "Close", **alert: Any) -> dict[str, Any]:
    """Shaped as Opsgenie's documented outgoing webhook payload for an alert action."""
    base: dict[str, Any] = {
        "alertId": alert_id,
        "message": "Checkout p99 latency above 2s",
        "tags": ["service:checkout", "team:payments", "service:cart"],
        "tinyId": "1791",
        "entity": "",
        "alias": "checkout-latency",
        "createdAt": 1714557600000,
        "updatedAt": 1714560300000000000,
        "username": "alice@example.com",
        "userId": "daed1180-0ce8-438b-8f8e-57e1a5920a2d",
        "description": "p99 above threshold",
        "team": "payments",
        "responders": [{"id": "8418d193-2dab-4490-b331-8c02cdd196b7", "type": "team", "name": "payments"}],
        "teams": ["8418d193-2dab-4490-b331-8c02cdd196b7"],
        "actions": [],
        "details": {},
        "priority": "P1",
        "source": "prometheus",
    }
    base.update(alert)
    return {
        "source": {"name": "web", "type": "web"},
        "alert": base,
        "action": action,
        "integrationId": "37c8f316-17c6-49d7-899b-9c7e540c048d",
        "integrationName": "closeloop",
    }


async def test_closed_alert_starts_a_lifecycle_with_the_incident(web: Web) -> None:
    r = await web.opsgenie(og_event())
    assert r.status_code == 202, r.text
    assert r.json() == {"workflow_id": WID, "new": True}
    inc = (await web.state(WID)).plan.incident
    assert inc.source == "opsgenie"
    assert inc.external_id == ALERT_ID
    assert inc.title == "Checkout p99 latency above 2s"
    assert inc.severity == "SEV1"
    assert inc.services == ["checkout", "cart"]
    assert inc.started_at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert inc.resolved_at is not None
    assert inc.dedup_key == "checkout-latency"


@pytest.mark.parametrize(("priority", "severity"), [("P1", "SEV1"), ("P2", "SEV2"), ("P3", "SEV3"),
                                                    ("P4", "SEV4"), ("P5", "SEV4")])
async def test_priority_gives_the_severity(web: Web, priority: str, severity: str) -> None:
    r = await web.opsgenie(og_event(f"prio-{priority}", priority=priority), token=OG_TOKENS[1])
    assert r.status_code == 202, r.text
    assert (await web.state(r.json()["workflow_id"])).plan.incident.severity == severity


async def test_wrong_token_401(web: Web) -> None:
    for token in ["nope", OG_TOKENS[0] + "x", OG_TOKENS[0][:-1]]:
        r = await web.opsgenie(og_event("wrong"), token=token)
        assert r.status_code == 401, token
        assert r.json() == {"error": "invalid X-Closeloop-Token"}
    assert web.app.handles == []


async def test_missing_token_401(web: Web) -> None:
    r = await web.opsgenie(og_event("missing"), token=None)
    assert r.status_code == 401
    assert r.json() == {"error": "missing X-Closeloop-Token"}
    assert web.app.handles == []


async def test_no_tokens_configured_401(app: App) -> None:
    async with make_web(app, secrets=secrets_of(api_tokens=("t",))) as http:
        r = await http.post("/webhooks/opsgenie", json=og_event(), headers={"X-Closeloop-Token": "t"})
        assert r.status_code == 401
        assert "CLOSELOOP_OPSGENIE_TOKENS" in r.json()["error"]


async def test_malformed_json_400(web: Web) -> None:
    for raw in [b"{not json", b"", b"\xff", b'"x"']:
        r = await web.opsgenie(None, body=raw)
        assert r.status_code == 400, raw
        assert "error" in r.json()


@pytest.mark.parametrize(("payload", "field"), [
    ({"alert": {}}, "action"),
    ({"action": "Close"}, "alert"),
    ({"action": "Close", "alert": "x"}, "alert"),
    ({"action": "Close", "alert": {"message": "m"}}, "alert.alertId"),
    ({"action": "Close", "alert": {"alertId": "a1"}}, "alert.message"),
    ({"action": "Close", "alert": {"alertId": "a 1", "message": "m"}}, "alert.alertId"),
    ({"action": "Close", "alert": {"alertId": "a1", "message": "m", "createdAt": "monday"}}, "alert.createdAt"),
])
async def test_missing_or_invalid_field_422(web: Web, payload: dict, field: str) -> None:
    r = await web.opsgenie(payload)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]
    assert web.app.handles == []


async def test_oversized_body_413(app: App) -> None:
    limit = webhook_limit("opsgenie")
    async with make_web(app, max_body_bytes=1024) as http:  # the API's limit does not apply
        raw = json.dumps(og_event(message="x" * limit)).encode()
        r = await http.post("/webhooks/opsgenie", content=raw, headers={"X-Closeloop-Token": OG_TOKENS[0]})
        assert r.status_code == 413
        assert f"limit is {limit} bytes" in r.json()["error"]


async def test_duplicate_delivery_one_lifecycle(web: Web) -> None:
    first = await web.opsgenie(og_event("dup"))
    second = await web.opsgenie(og_event("dup"))
    assert first.json() == {"workflow_id": "postmortem/opsgenie/dup", "new": True}
    assert second.json() == {"workflow_id": "postmortem/opsgenie/dup", "new": False}
    assert (await web.state("postmortem/opsgenie/dup")).runs == 1
    assert len(web.app.handles) == 1


async def test_other_actions_are_ignored(web: Web) -> None:
    for action in ["Create", "Acknowledge", "AddNote", "Escalate", "close"]:
        r = await web.opsgenie(og_event("ignored", action=action))
        assert r.status_code == 202, r.text
        assert r.json() == {"ignored": action}
    assert web.app.handles == []
