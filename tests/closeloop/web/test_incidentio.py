"""POST /webhooks/incidentio: Standard Webhooks (Svix) signatures with a timestamp tolerance, incidents in a
starting status category (default learning, closed) start one lifecycle, everything else is ignored. The
vendor's own examples, verbatim, are in test_vendor_payloads.py."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from closeloop.integrations.incidentio.webhook import incidentio_signature_ok
from closeloop.models import Link
from tests.closeloop.web.conftest import (
    IIO_SECRETS,
    Web,
    iio_headers,
    make_web,
    secrets_of,
    svix_sign,
    webhook_limit,
)
from tests.temporal_env import App

EVENT = "public_incident.incident_updated_v2"
STATUS = "public_incident.incident_status_updated_v2"  # the one event that wraps it: {incident, new_status, ...}


def iio_event(incident_id: str = "01FDAG4SAP5TYPT98WGR2N7W91", category: str = "closed",
              event_type: str = EVENT, **incident: Any) -> dict[str, Any]:
    """Shaped as incident.io's documented public_incident.incident_updated_v2 payload: the incident directly
    under the event key (tests/payloads/incidentio/), with a few of its fields."""
    base: dict[str, Any] = {
        "id": incident_id,
        "name": "Our database is sad",
        "reference": "INC-123",
        "permalink": "https://app.incident.io/acme/incidents/123",
        "created_at": "2021-08-17T13:28:57.801578Z",
        "updated_at": "2021-08-17T14:28:57.801578Z",
        "incident_status": {"id": "01FCNDV6P870EA6S7TK1DSYDG0", "name": "Closed", "category": category,
                            "rank": 4},
        "severity": {"id": "01FCNDV6P870EA6S7TK1DSYDG0", "name": "Critical", "rank": 1,
                     "description": "Issues with **low impact**."},
        "mode": "standard",
        "visibility": "public",
        "summary": "Our database is really really sad, and we don't know why yet.",
    }
    base.update(incident)
    return {"event_type": event_type, event_type: base}


WID = "postmortem/incidentio/01FDAG4SAP5TYPT98WGR2N7W91"


async def test_closed_incident_starts_a_lifecycle_with_the_incident(web: Web) -> None:
    r = await web.incidentio(iio_event())
    assert r.status_code == 202, r.text
    assert r.json() == {"workflow_id": WID, "new": True}
    inc = (await web.state(WID)).plan.incident
    assert inc.source == "incidentio"
    assert inc.external_id == "01FDAG4SAP5TYPT98WGR2N7W91"
    assert inc.title == "Our database is sad"
    assert inc.severity == "SEV1"  # "Critical", through the default severity map
    assert inc.unmapped_severity is None
    assert inc.links == [Link(title="incident.io INC-123", url="https://app.incident.io/acme/incidents/123")]
    assert inc.started_at == datetime(2021, 8, 17, 13, 28, 57, 801578, tzinfo=UTC)
    assert inc.resolved_at == datetime(2021, 8, 17, 14, 28, 57, 801578, tzinfo=UTC)


async def test_learning_category_and_second_secret(web: Web) -> None:
    """"Post-incident" (category learning) starts it too: a team using incident.io's post-incident flow."""
    r = await web.incidentio(iio_event("01LEARNING", category="learning", severity={"name": "SEV2"}),
                             secret=IIO_SECRETS[1])
    assert r.status_code == 202, r.text
    assert (await web.state(r.json()["workflow_id"])).plan.incident.severity == "SEV2"


async def test_several_signatures_one_valid(web: Web) -> None:
    raw = json.dumps(iio_event("01MULTI")).encode()
    headers = iio_headers(raw)
    ts = headers["webhook-timestamp"]
    other = svix_sign(headers["webhook-id"], ts, raw, "whsec_" + "QUJDREVGR0g=")
    headers["webhook-signature"] = f"v1a,xyz {other} {headers['webhook-signature']}"
    r = await web.raw("/webhooks/incidentio", raw, headers)
    assert r.status_code == 202, r.text


async def test_wrong_signature_401(web: Web) -> None:
    r = await web.incidentio(iio_event("01WRONG"), secret="whsec_" + "d3Jvbmcta2V5LXdyb25nLWtleQ==")
    assert r.status_code == 401
    assert r.json() == {"error": "invalid webhook-signature"}
    raw = json.dumps(iio_event("01WRONG")).encode()
    for sig in ["v1,", "v1,!!!", "garbage", "v2," + iio_headers(raw)["webhook-signature"][3:]]:
        r = await web.raw("/webhooks/incidentio", raw, {**iio_headers(raw), "webhook-signature": sig})
        assert r.status_code == 401, sig
    # the signature covers the id too
    r = await web.raw("/webhooks/incidentio", raw, {**iio_headers(raw), "webhook-id": "msg_other"})
    assert r.status_code == 401
    assert web.app.handles == []


async def test_missing_signature_401(web: Web) -> None:
    raw = json.dumps(iio_event("01MISSING")).encode()
    for drop in ["webhook-id", "webhook-timestamp", "webhook-signature"]:
        headers = {k: v for k, v in iio_headers(raw).items() if k != drop}
        r = await web.raw("/webhooks/incidentio", raw, headers)
        assert r.status_code == 401, drop
        assert "missing" in r.json()["error"]
    assert web.app.handles == []


@pytest.mark.parametrize("offset", [-301, -3600, 301, 86400])
async def test_timestamp_outside_tolerance_401(web: Web, offset: int) -> None:
    r = await web.incidentio(iio_event("01OLD"), timestamp=int(time.time()) + offset)
    assert r.status_code == 401
    assert r.json() == {"error": "timestamp outside tolerance"}
    assert web.app.handles == []


async def test_timestamp_not_a_number_401(web: Web) -> None:
    raw = json.dumps(iio_event("01TS")).encode()
    r = await web.raw("/webhooks/incidentio", raw, {**iio_headers(raw), "webhook-timestamp": "yesterday"})
    assert r.status_code == 401


async def test_no_secrets_configured_401(app: App) -> None:
    async with make_web(app, secrets=secrets_of(api_tokens=("t",))) as http:
        raw = json.dumps(iio_event()).encode()
        r = await http.post("/webhooks/incidentio", content=raw, headers=iio_headers(raw))
        assert r.status_code == 401
        assert "CLOSELOOP_INCIDENTIO_SECRETS" in r.json()["error"]


async def test_malformed_json_400(web: Web) -> None:
    for raw in [b"{not json", b"", b"\xff\xfe", b"[1, 2]"]:
        r = await web.incidentio(None, body=raw)
        assert r.status_code == 400, raw
        assert "error" in r.json()


@pytest.mark.parametrize(("payload", "field"), [
    ({}, "event_type"),
    ({"event_type": EVENT}, f"missing field {EVENT}"),
    ({"event_type": EVENT, EVENT: {"incident_status": {"category": "closed"}, "name": "x"}}, f"{EVENT}.id"),
    ({"event_type": EVENT, EVENT: {"incident_status": {"category": "closed"}, "id": "01X"}}, f"{EVENT}.name"),
    ({"event_type": EVENT, EVENT: {"incident_status": {"category": "closed"}, "id": "0 1", "name": "x"}},
     f"{EVENT}.id"),
    ({"event_type": STATUS, STATUS: {"incident": {"incident_status": {"category": "closed"}, "name": "x"}}},
     f"{STATUS}.incident.id"),
])
async def test_missing_or_invalid_field_422(web: Web, payload: dict, field: str) -> None:
    r = await web.incidentio(payload)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]
    assert web.app.handles == []


async def test_oversized_body_413(app: App) -> None:
    limit = webhook_limit("incidentio")
    async with make_web(app, max_body_bytes=1024) as http:  # the API's limit does not apply
        raw = json.dumps(iio_event("01BIG", name="x" * limit)).encode()
        r = await http.post("/webhooks/incidentio", content=raw, headers=iio_headers(raw))
        assert r.status_code == 413
        assert f"limit is {limit} bytes" in r.json()["error"]


async def test_duplicate_delivery_one_lifecycle(web: Web) -> None:
    first = await web.incidentio(iio_event("01DUP"))
    second = await web.incidentio(iio_event("01DUP"))
    assert first.json() == {"workflow_id": "postmortem/incidentio/01DUP", "new": True}
    assert second.json() == {"workflow_id": "postmortem/incidentio/01DUP", "new": False}
    assert (await web.state("postmortem/incidentio/01DUP")).runs == 1
    assert len(web.app.handles) == 1


async def test_open_incidents_and_other_events_are_ignored(web: Web) -> None:
    for category in ["live", "triage", "canceled", "declined", "merged", "paused", "resolved"]:
        r = await web.incidentio(iio_event("01IGN", category=category))
        assert r.status_code == 202, r.text
        assert r.json() == {"ignored": EVENT, "status": category}
    r = await web.incidentio({"event_type": "public_alert.alert_created_v1", "public_alert.alert_created_v1": {}})
    assert r.status_code == 202
    assert r.json() == {"ignored": "public_alert.alert_created_v1"}
    assert web.app.handles == []


def test_signature_check_unit() -> None:
    body = b'{"a": 1}'
    sig = svix_sign("m1", 1700000000, body, IIO_SECRETS[1])
    assert incidentio_signature_ok("m1", "1700000000", body, sig, IIO_SECRETS)
    assert not incidentio_signature_ok("m1", "1700000001", body, sig, IIO_SECRETS)
    assert not incidentio_signature_ok("m1", "1700000000", body, sig, (IIO_SECRETS[0], "whsec_***"))
    assert not incidentio_signature_ok("m1", "1700000000", body, sig, ())
