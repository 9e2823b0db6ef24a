"""Fuzz /webhooks/pagerduty with hypothesis: validly signed random bytes, random JSON and random near-valid
v3 envelopes, with random extra headers. Whatever arrives, the answer is never a 5xx (and always JSON)."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest

import hypothesis  # a test extra: a missing install fails loudly, never skips

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.closeloop.web.conftest import PD_SECRETS, Web, sign  # noqa: E402

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)

maybe = lambda s: st.one_of(st.none(), json_values, s)  # noqa: E731

envelopes = st.fixed_dictionaries({
    "event": st.one_of(json_values, st.fixed_dictionaries(
        {"event_type": maybe(st.sampled_from(["incident.resolved", "incident.triggered", "service.updated"]))},
        optional={
            "occurred_at": maybe(st.sampled_from(["2020-10-02T18:45:22.169Z", "2020-10-02", "not a time",
                                                  "9999-12-31T23:59:59Z"])),
            "data": maybe(st.fixed_dictionaries({}, optional={
                "id": maybe(st.sampled_from(["PFUZZ1", "PFUZZ2"]) | st.text(max_size=12)),
                "title": maybe(st.text(max_size=30)),
                "urgency": maybe(st.sampled_from(["high", "low", "HIGH"])),
                "priority": maybe(st.fixed_dictionaries({"summary": maybe(st.sampled_from(["P1", "P5", "Major"]))})),
                "service": maybe(st.fixed_dictionaries({"summary": maybe(st.text(max_size=20))})),
                "html_url": maybe(st.text(max_size=20)),
                "number": json_values,
                "created_at": maybe(st.sampled_from(["2020-04-09T15:16:27Z", "2020-04-09T15:16:27+99:00"])),
                "incident_key": json_values,
            })),
        },
    )),
})

# mostly valid resolutions, so the path that starts a lifecycle gets fuzzed too
resolved = st.fixed_dictionaries({"event": st.fixed_dictionaries({
    "event_type": st.just("incident.resolved"),
    "occurred_at": st.sampled_from(["2020-10-02T18:45:22.169Z", "2020-10-02T18:45:22+02:00", "bad"]),
    "data": st.fixed_dictionaries({
        "id": st.sampled_from(["PFUZZ1", "PFUZZ2", "PFUZZ3"]),
        "title": st.text(min_size=1, max_size=600),
    }, optional={
        "urgency": json_values,
        "priority": st.one_of(json_values, st.fixed_dictionaries({"summary": json_values})),
        "service": st.one_of(json_values, st.fixed_dictionaries({"summary": st.text(max_size=300)})),
        "html_url": json_values,
        "number": json_values,
        "created_at": json_values,
        "incident_key": json_values,
    }),
})})

bodies = st.one_of(
    resolved.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    envelopes.map(lambda v: json.dumps(v).encode()),
    envelopes.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8")),
)

header_text = st.text(alphabet=string.ascii_letters + string.digits + " -_=,;/.:", max_size=30)
extra_headers = st.dictionaries(
    st.sampled_from(["Content-Type", "X-Webhook-Id", "User-Agent", "X-Webhook-Subscription", "Accept"]),
    header_text, max_size=3,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(body=bodies, headers=extra_headers, secret=st.sampled_from(PD_SECRETS), extra_sigs=st.lists(header_text,
                                                                                                  max_size=3))
async def test_signed_random_deliveries_never_5xx(web: Web, body: bytes, headers: dict[str, str], secret: str,
                                                  extra_sigs: list[str]) -> None:
    signature = ",".join([*extra_sigs, sign(body, secret)])
    r = await web.pagerduty(None, body=body, signature=signature, headers=headers)
    assert r.status_code < 500, (r.status_code, r.text, body)
    payload: Any = r.json()
    assert isinstance(payload, dict)
    assert r.status_code in (202, 400, 413, 422), (r.status_code, r.text)
    if r.status_code != 202:
        assert isinstance(payload.get("error"), str)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200), signature=header_text)
async def test_unsigned_random_deliveries_401(web: Web, body: bytes, signature: str) -> None:
    r = await web.pagerduty(None, body=body, signature=signature)
    assert r.status_code == 401, (r.status_code, r.text)
    assert "error" in r.json()
