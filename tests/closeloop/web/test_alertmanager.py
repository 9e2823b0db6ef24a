"""POST /webhooks/alertmanager: webhook v4 groups, bearer or basic auth, one incident per groupKey, and the
flapping rule (a group resolving again opens no second postmortem)."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.closeloop.web.conftest import AM_BASIC, AM_TOKENS, Web, basic, make_web, secrets_of, webhook_limit
from tests.temporal_env import App

GROUP_KEY = '{}/{}:{alertname="HighErrorRate", service="checkout"}'


def am_group(group_key: str = GROUP_KEY, status: str = "resolved", **extra: Any) -> dict[str, Any]:
    """Shaped as Alertmanager's documented webhook payload (version 4)."""
    labels = {"alertname": "HighErrorRate", "service": "checkout", "severity": "critical"}
    group: dict[str, Any] = {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "closeloop",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "Checkout error rate above 5%"},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [
            {"status": status, "labels": {**labels, "instance": "web-1"},
             "annotations": {"summary": "Checkout error rate above 5%"},
             "startsAt": "2024-05-01T10:02:00.000Z", "endsAt": "2024-05-01T10:40:00.000Z",
             "generatorURL": "http://prometheus.example:9090/graph?g0.expr=...", "fingerprint": "a1b2c3d4e5f60718"},
            {"status": status, "labels": {**labels, "instance": "web-2"},
             "annotations": {"summary": "Checkout error rate above 5%"},
             "startsAt": "2024-05-01T10:00:00.000Z", "endsAt": "2024-05-01T10:45:30.000Z",
             "generatorURL": "http://prometheus.example:9090/graph?g0.expr=...", "fingerprint": "b1b2c3d4e5f60718"},
        ],
    }
    group.update(extra)
    return group


def wid(group_key: str = GROUP_KEY) -> str:
    return "postmortem/alertmanager/" + hashlib.sha256(group_key.encode()).hexdigest()[:16]


async def test_resolved_group_starts_one_lifecycle_with_the_incident(web: Web) -> None:
    r = await web.alertmanager(am_group())
    assert r.status_code == 202, r.text
    assert r.json() == {"workflow_id": wid(), "new": True}
    inc = (await web.state(wid())).plan.incident
    assert inc.source == "alertmanager"
    assert inc.external_id == hashlib.sha256(GROUP_KEY.encode()).hexdigest()[:16]
    assert inc.title == "Checkout error rate above 5%"
    assert inc.severity == "SEV1"
    assert inc.services == ["checkout"]
    assert inc.started_at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)  # min startsAt
    assert inc.resolved_at == datetime(2024, 5, 1, 10, 45, 30, tzinfo=UTC)  # max endsAt
    assert inc.dedup_key == "HighErrorRate"


@pytest.mark.parametrize(("severity", "sev", "unmapped"), [
    ("critical", "SEV1", None), ("high", "SEV2", None), ("error", "SEV2", None), ("warning", "SEV3", None),
    ("info", "SEV4", None), ("Critical", "SEV1", None), (None, "SEV3", None), ("page", "SEV3", "page")])
async def test_severity_label(web: Web, severity: str | None, sev: str, unmapped: str | None) -> None:
    group = am_group(f"sev-{severity}")
    for labels in [group["commonLabels"], *(a["labels"] for a in group["alerts"])]:
        labels.pop("severity")
        if severity:
            labels["severity"] = severity
    r = await web.alertmanager(group)
    assert r.status_code == 202, r.text
    incident = (await web.state(r.json()["workflow_id"])).plan.incident
    assert (incident.severity, incident.unmapped_severity) == (sev, unmapped)  # an unknown label is flagged


async def test_title_falls_back_to_the_alertname(web: Web) -> None:
    r = await web.alertmanager(am_group("no-summary", commonAnnotations={}))
    assert r.status_code == 202, r.text
    assert (await web.state(r.json()["workflow_id"])).plan.incident.title == "HighErrorRate"


async def test_basic_auth(web: Web) -> None:
    r = await web.alertmanager(am_group("basic-auth"), auth=basic(AM_BASIC[1]))
    assert r.status_code == 202, r.text


async def test_wrong_credentials_401(web: Web) -> None:
    for auth in [f"Bearer {AM_TOKENS[0]}x", "Bearer nope", basic("alertmanager:wrong"), basic("nobody:pw"),
                 "Basic !!!notbase64", f"Token {AM_TOKENS[0]}"]:
        r = await web.alertmanager(am_group("wrong"), auth=auth)
        assert r.status_code == 401, auth
        assert "error" in r.json()
    assert web.app.handles == []


async def test_missing_credentials_401(web: Web) -> None:
    r = await web.alertmanager(am_group("missing"), auth=None)
    assert r.status_code == 401
    assert "missing credentials" in r.json()["error"]
    assert web.app.handles == []


async def test_no_credentials_configured_401(app: App) -> None:
    async with make_web(app, secrets=secrets_of(api_tokens=("t",))) as http:
        r = await http.post("/webhooks/alertmanager", json=am_group(), headers={"Authorization": "Bearer t"})
        assert r.status_code == 401
        assert "CLOSELOOP_ALERTMANAGER_TOKENS" in r.json()["error"]


async def test_malformed_json_400(web: Web) -> None:
    for raw in [b"{not json", b"", b"\xff", b"[]"]:
        r = await web.alertmanager(None, body=raw)
        assert r.status_code == 400, raw
        assert "error" in r.json()


def _without(key: str) -> dict[str, Any]:
    group = am_group()
    del group[key]
    return group


@pytest.mark.parametrize(("payload", "field"), [
    (_without("status"), "status"),
    (_without("groupKey"), "groupKey"),
    (_without("alerts"), "alerts"),
    (am_group(alerts=[]), "alerts"),
    (am_group(commonAnnotations={}, commonLabels={}, alerts=[{"labels": {}}]), "alertname"),
    (am_group(alerts=[{"labels": {"alertname": "A"}, "startsAt": "yesterday"}]), "alerts[0].startsAt"),
])
async def test_missing_or_invalid_field_422(web: Web, payload: dict, field: str) -> None:
    r = await web.alertmanager(payload)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]
    assert web.app.handles == []


async def test_oversized_body_413(app: App) -> None:
    limit = webhook_limit("alertmanager")
    async with make_web(app, max_body_bytes=1024) as http:  # the API's limit does not apply
        raw = json.dumps(am_group(commonAnnotations={"summary": "x" * limit})).encode()
        r = await http.post("/webhooks/alertmanager", content=raw, headers={"Authorization": f"Bearer {AM_TOKENS[0]}"})
        assert r.status_code == 413
        assert f"limit is {limit} bytes" in r.json()["error"]


async def test_duplicate_delivery_one_lifecycle(web: Web) -> None:
    first = await web.alertmanager(am_group("dup"))
    second = await web.alertmanager(am_group("dup"))
    assert first.json() == {"workflow_id": wid("dup"), "new": True}
    assert second.json() == {"workflow_id": wid("dup"), "new": False}
    assert (await web.state(wid("dup"))).runs == 1
    assert len(web.app.handles) == 1


async def test_flapping_group_opens_one_postmortem(web: Web) -> None:
    key = "flapping"
    assert (await web.alertmanager(am_group(key, status="firing"))).json() == {"ignored": "firing"}
    first = await web.alertmanager(am_group(key))
    assert first.json() == {"workflow_id": wid(key), "new": True}
    # fires again, resolves again later: same groupKey, so the same workflow id; nothing new starts
    later = copy.deepcopy(am_group(key))
    for alert in later["alerts"]:
        alert["startsAt"], alert["endsAt"] = "2024-05-01T12:00:00Z", "2024-05-01T12:10:00Z"
    assert (await web.alertmanager(am_group(key, status="firing"))).json() == {"ignored": "firing"}
    again = await web.alertmanager(later)
    assert again.status_code == 202
    assert again.json() == {"workflow_id": wid(key), "new": False}
    state = await web.state(wid(key))
    assert state.runs == 1
    assert state.plan.incident.resolved_at == datetime(2024, 5, 1, 10, 45, 30, tzinfo=UTC)  # the first
    assert len(web.app.handles) == 1


async def test_firing_is_ignored(web: Web) -> None:
    r = await web.alertmanager(am_group("firing-only", status="firing"))
    assert r.status_code == 202
    assert r.json() == {"ignored": "firing"}
    assert web.app.handles == []


async def test_odd_group_keys_still_hash(web: Web) -> None:
    raw = json.dumps(am_group("\ud800 lone surrogate")).encode()  # json.dumps escapes it: valid JSON
    r = await web.alertmanager(None, body=raw)
    assert r.status_code == 202, r.text
    assert r.json()["new"] is True
