"""POST /webhooks/pagerduty: signatures over the raw body (several secrets, several signatures), the v3
envelope, idempotent starts, and clean JSON errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from closeloop.integrations.pagerduty.webhook import pagerduty_signature_ok
from closeloop.models import Link
from tests.closeloop.web.conftest import PD_SECRETS, Web, make_web, pd_envelope, sign, webhook_limit
from tests.temporal_env import App

WID = "postmortem/pagerduty/PGR0VU2"


async def test_resolved_event_starts_one_lifecycle_with_the_incident(web: Web) -> None:
    r = await web.pagerduty(pd_envelope())
    assert r.status_code == 202, r.text
    assert r.json() == {"workflow_id": WID, "new": True}
    inc = (await web.state(WID)).plan.incident
    assert inc.source == "pagerduty"
    assert inc.external_id == "PGR0VU2"
    assert inc.title == "A little bump in the road"
    assert inc.severity == "SEV1"  # from the priority's summary
    assert inc.services == ["checkout"]
    assert inc.links == [Link(title="PagerDuty incident #2", url="https://acme.pagerduty.com/incidents/PGR0VU2")]
    assert inc.resolved_at == datetime(2020, 10, 2, 18, 45, 22, 169000, tzinfo=UTC)
    assert inc.started_at == datetime(2020, 4, 9, 15, 16, 27, tzinfo=UTC)
    assert inc.dedup_key == "d3640fbd41094207a1c11e58e46b1662"


@pytest.mark.parametrize(("urgency", "severity"), [("high", "SEV2"), ("low", "SEV3")])
async def test_without_priority_the_urgency_gives_the_severity(web: Web, urgency: str, severity: str) -> None:
    r = await web.pagerduty(pd_envelope("PURG1", priority=None, urgency=urgency))
    assert r.status_code == 202, r.text
    assert (await web.state(r.json()["workflow_id"])).plan.incident.severity == severity


async def test_signed_with_the_second_of_two_rotating_secrets(web: Web) -> None:
    r = await web.pagerduty(pd_envelope("PROT2"), secret=PD_SECRETS[1])
    assert r.status_code == 202, r.text
    assert r.json()["new"] is True


async def test_several_signatures_in_the_header_one_valid(web: Web) -> None:
    raw = json.dumps(pd_envelope("PMULTI")).encode()
    header = ",".join([sign(raw, "someone-else"), "v0=abc", sign(raw, PD_SECRETS[0]), sign(raw, "another")])
    r = await web.pagerduty(None, body=raw, signature=header)
    assert r.status_code == 202, r.text
    # PagerDuty's own format: comma-separated, maybe with spaces
    r = await web.pagerduty(None, body=raw, signature=f"v1={'0' * 64}, {sign(raw, PD_SECRETS[1])}")
    assert r.status_code == 202, r.text
    assert r.json() == {"workflow_id": "postmortem/pagerduty/PMULTI", "new": False}


async def test_wrong_signature_401(web: Web) -> None:
    r = await web.pagerduty(pd_envelope("PWRONG"), secret="not-our-secret")
    assert r.status_code == 401
    assert r.json() == {"error": "invalid X-PagerDuty-Signature"}
    for header in ["v1=", "v1=zz", "garbage", "v2=" + sign(b"x", PD_SECRETS[0])[3:], ",,,", "v1=\xfc"]:
        r = await web.pagerduty(pd_envelope("PWRONG"), signature=header.encode("latin-1"))  # type: ignore[arg-type]
        assert r.status_code == 401, header
        assert "error" in r.json()
    assert web.app.handles == []


async def test_missing_signature_401(web: Web) -> None:
    r = await web.post("/webhooks/pagerduty", content=json.dumps(pd_envelope()).encode())
    assert r.status_code == 401
    assert r.json() == {"error": "missing X-PagerDuty-Signature"}
    assert web.app.handles == []


async def test_body_altered_after_signing_401(web: Web) -> None:
    raw = json.dumps(pd_envelope("PALTER")).encode()
    signature = sign(raw, PD_SECRETS[0])
    altered = raw.replace(b"A little bump", b"A large crater")
    r = await web.pagerduty(None, body=altered, signature=signature)
    assert r.status_code == 401
    # re-serialised (same JSON, other bytes): the signature is over the raw body, so it fails too
    reformatted = json.dumps(json.loads(raw), indent=2).encode()
    r = await web.pagerduty(None, body=reformatted, signature=signature)
    assert r.status_code == 401
    assert web.app.handles == []


async def test_no_secrets_configured_401_for_everyone(app: App) -> None:
    from tests.closeloop.web.conftest import secrets_of

    async with make_web(app, secrets=secrets_of(api_tokens=("t",))) as http:
        raw = json.dumps(pd_envelope()).encode()
        r = await http.post("/webhooks/pagerduty", content=raw, headers={"X-PagerDuty-Signature": sign(raw, "")})
        assert r.status_code == 401
        assert "CLOSELOOP_PAGERDUTY_SECRETS" in r.json()["error"]


async def test_malformed_json_400(web: Web) -> None:
    for raw in [b"{not json", b"", b"\xff\xfe\x00", b"[1, 2", b"[" * 100_000]:
        r = await web.pagerduty(None, body=raw)
        assert r.status_code == 400, raw[:20]
        assert r.json()["error"].startswith("malformed JSON")
    r = await web.pagerduty([1, 2])
    assert r.status_code == 400
    assert r.json() == {"error": "the body must be a JSON object"}


@pytest.mark.parametrize(("payload", "field"), [
    ({}, "event"),
    ({"event": {"data": {}}}, "event.event_type"),
    ({"event": "x"}, "event"),
    ({"event": {"event_type": "incident.resolved"}}, "event.data"),
    ({"event": {"event_type": "incident.resolved", "occurred_at": "2020-10-02T18:45:22Z",
                "data": {"title": "x"}}}, "event.data.id"),
    ({"event": {"event_type": "incident.resolved", "data": {"id": "P1"}}}, "event.data.title"),
    ({"event": {"event_type": "incident.resolved", "data": {"id": "P 1", "title": "t"}}}, "event.data.id"),
    ({"event": {"event_type": "incident.resolved", "occurred_at": "yesterday",
                "data": {"id": "P1", "title": "t"}}}, "event.occurred_at"),
    ({"event": {"event_type": 42, "data": {}}}, "event.event_type"),
])
async def test_missing_or_invalid_field_422(web: Web, payload: dict, field: str) -> None:
    r = await web.pagerduty(payload)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]
    assert web.app.handles == []


async def test_oversized_body_413(app: App) -> None:
    limit = webhook_limit("pagerduty")  # "webhooks greater than 256 KB are always dropped"
    async with make_web(app, max_body_bytes=1024) as http:  # the API's limit does not apply
        raw = json.dumps(pd_envelope("PBIG", title="x" * limit)).encode()
        headers = {"X-PagerDuty-Signature": sign(raw, PD_SECRETS[0])}
        r = await http.post("/webhooks/pagerduty", content=raw, headers=headers)
        assert r.status_code == 413
        assert f"limit is {limit} bytes" in r.json()["error"]

        async def chunks():  # no Content-Length: the limit applies to what is actually read
            for i in range(0, len(raw), 4096):
                yield raw[i:i + 4096]

        r = await http.post("/webhooks/pagerduty", content=chunks(), headers=headers)
        assert "content-length" not in r.request.headers
        assert r.status_code == 413
        assert f"limit is {limit} bytes" in r.json()["error"]

        r = await http.post("/webhooks/pagerduty", content=raw,
                            headers={**headers, "Content-Length": "abc"})
        assert r.status_code in (400, 413)


async def test_duplicate_delivery_one_lifecycle(web: Web) -> None:
    first = await web.pagerduty(pd_envelope("PDUP"))
    second = await web.pagerduty(pd_envelope("PDUP"))
    assert first.status_code == second.status_code == 202
    assert first.json() == {"workflow_id": "postmortem/pagerduty/PDUP", "new": True}
    assert second.json() == {"workflow_id": "postmortem/pagerduty/PDUP", "new": False}
    state = await web.state("postmortem/pagerduty/PDUP")
    assert state.runs == 1
    history = await web.app.client.get_workflow_handle("postmortem/pagerduty/PDUP").fetch_history()
    assert history.events[0].HasField("workflow_execution_started_event_attributes")
    assert len(web.app.handles) == 1


async def test_other_event_types_are_ignored(web: Web) -> None:
    for event_type in ["incident.triggered", "incident.acknowledged", "service.updated", "pagey.ping"]:
        r = await web.pagerduty(pd_envelope("PIGN", event_type=event_type))
        assert r.status_code == 202, r.text
        assert r.json() == {"ignored": event_type}
    assert web.app.handles == []
    from temporalio.service import RPCError

    with pytest.raises(RPCError):
        await web.app.client.get_workflow_handle("postmortem/pagerduty/PIGN").describe()


def test_signature_check_unit() -> None:
    body = b'{"a": 1}'
    assert pagerduty_signature_ok(body, sign(body, "s2"), ("s1", "s2"))
    assert pagerduty_signature_ok(body, sign(body, "s1").upper().replace("V1=", "v1="), ("s1",))
    assert not pagerduty_signature_ok(body, sign(body, "s3"), ("s1", "s2"))
    assert not pagerduty_signature_ok(body, sign(body, "s1"), ())
    assert not pagerduty_signature_ok(body + b" ", sign(body, "s1"), ("s1",))
