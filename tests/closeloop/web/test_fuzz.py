"""Fuzz every endpoint with hypothesis: validly signed (or authenticated) random bytes, random JSON and random
near-valid payloads of PagerDuty, incident.io, Alertmanager, Opsgenie and the generic incident API (both
routes, with random path segments too), with random extra headers. Whatever arrives, the answer is never a
5xx (and always JSON)."""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.closeloop.web.conftest import (  # noqa: E402
    AM_BASIC,
    AM_TOKENS,
    IIO_SECRETS,
    OG_TOKENS,
    PD_SECRETS,
    TOKENS,
    Web,
    basic,
    sign,
)

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


# --------------------------------------------------------------------------- incident.io, Alertmanager, Opsgenie

IIO_EVENT = "public_incident.incident_updated_v2"
iio_events = st.fixed_dictionaries({"event_type": maybe(st.sampled_from([IIO_EVENT, "public_alert.x"]))}).flatmap(
    lambda head: st.fixed_dictionaries({**{k: st.just(v) for k, v in head.items()}}, optional={
        IIO_EVENT: maybe(st.fixed_dictionaries({"incident": maybe(st.fixed_dictionaries({}, optional={
            "id": maybe(st.sampled_from(["01FUZZ1", "01FUZZ2"]) | st.text(max_size=12)),
            "name": maybe(st.text(max_size=30)),
            "incident_status": maybe(st.fixed_dictionaries({"category": maybe(st.sampled_from(
                ["closed", "resolved", "live"]))})),
            "severity": maybe(st.fixed_dictionaries({"name": json_values})),
            "permalink": json_values,
            "reference": json_values,
            "created_at": maybe(st.sampled_from(["2021-08-17T13:28:57Z", "nope"])),
            "updated_at": maybe(st.sampled_from(["2021-08-17T14:28:57Z", "2021-13-01"])),
        }))})),
    }))

am_times = maybe(st.sampled_from(["2024-05-01T10:00:00Z", "0001-01-01T00:00:00Z", "2024-05-01T10:00:00.123+02:00",
                                  "later", "2024-05-01"]))
am_groups = st.fixed_dictionaries({}, optional={
    "version": maybe(st.just("4")),
    "groupKey": maybe(st.sampled_from(["{}:{alertname=\"A\"}", "fuzz"]) | st.text(max_size=20)),
    "status": maybe(st.sampled_from(["resolved", "firing"])),
    "commonLabels": maybe(st.dictionaries(st.sampled_from(["alertname", "service", "severity"]), json_values)),
    "commonAnnotations": maybe(st.fixed_dictionaries({"summary": json_values})),
    "externalURL": json_values,
    "alerts": maybe(st.lists(maybe(st.fixed_dictionaries({}, optional={
        "labels": maybe(st.dictionaries(st.sampled_from(["alertname", "service", "severity"]), json_values)),
        "startsAt": am_times, "endsAt": am_times,
    })), max_size=3)),
})

og_events = st.fixed_dictionaries({}, optional={
    "action": maybe(st.sampled_from(["Close", "Create"])),
    "alert": maybe(st.fixed_dictionaries({}, optional={
        "alertId": maybe(st.sampled_from(["og-fuzz-1", "og-fuzz-2"]) | st.text(max_size=12)),
        "message": maybe(st.text(max_size=30)),
        "tags": maybe(st.lists(st.one_of(st.text(max_size=12).map(lambda t: "service:" + t), json_values),
                               max_size=3)),
        "priority": maybe(st.sampled_from(["P1", "P3", "P5", "P9"])),
        "createdAt": maybe(st.integers() | st.sampled_from([1714557600000, 10**20, -1])),
        "alias": json_values,
    })),
})


# mostly valid closings, so the paths that start a lifecycle get fuzzed too
_iio_incident = st.fixed_dictionaries({
    "id": st.sampled_from(["01FUZZC1", "01FUZZC2"]), "name": st.text(min_size=1, max_size=600),
    "incident_status": st.fixed_dictionaries({"category": st.sampled_from(["closed", "learning"])}),
}, optional={"severity": st.one_of(json_values, st.fixed_dictionaries({"name": json_values})),
             "permalink": json_values, "reference": json_values, "created_at": json_values,
             "updated_at": json_values})
# both documented shapes: the incident itself (created, updated), or wrapped (status_updated)
iio_closed = st.fixed_dictionaries({"event_type": st.just(IIO_EVENT), IIO_EVENT: st.one_of(
    _iio_incident, st.fixed_dictionaries({"incident": _iio_incident}))})
am_resolved = st.fixed_dictionaries({
    "version": st.just("4"), "status": st.just("resolved"), "groupKey": st.sampled_from(["fz1", "fz2", "\ud800"]),
    "alerts": st.lists(st.fixed_dictionaries({"labels": st.fixed_dictionaries({"alertname": st.text(min_size=1,
                                                                                                  max_size=300)},
                                                                            optional={"service": json_values,
                                                                                      "severity": json_values}),
                                              "startsAt": am_times, "endsAt": am_times}), min_size=1, max_size=3),
}, optional={"commonLabels": json_values, "commonAnnotations": st.fixed_dictionaries({"summary": json_values})})
og_closed = st.fixed_dictionaries({"action": st.just("Close"), "alert": st.fixed_dictionaries({
    "alertId": st.sampled_from(["og-fz-1", "og-fz-2"]), "message": st.text(min_size=1, max_size=600),
}, optional={"tags": st.lists(st.text(max_size=250).map(lambda t: "service:" + t) | json_values, max_size=3),
             "priority": json_values, "createdAt": st.integers(), "alias": json_values})})


def _bodies(structured: st.SearchStrategy[Any], valid: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        valid.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        structured.map(lambda v: json.dumps(v).encode()),
        structured.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8")),
    )


fuzz_settings = settings(max_examples=100, deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _check(r: Any, *, also: tuple[int, ...] = ()) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    payload: Any = r.json()
    assert isinstance(payload, dict)
    assert r.status_code in (202, 400, 413, 422, *also), (r.status_code, r.text)
    if r.status_code != 202:
        assert isinstance(payload.get("error"), str)


@fuzz_settings
@given(body=_bodies(iio_events, iio_closed), headers=extra_headers, secret=st.sampled_from(IIO_SECRETS))
async def test_incidentio_signed_random_deliveries_never_5xx(web: Web, body: bytes, headers: dict[str, str],
                                                             secret: str) -> None:
    _check(await web.incidentio(None, body=body, secret=secret, headers=headers))


@fuzz_settings
@given(body=_bodies(am_groups, am_resolved), headers=extra_headers,
       auth=st.sampled_from([f"Bearer {AM_TOKENS[0]}", *(basic(b) for b in AM_BASIC)]))
async def test_alertmanager_authenticated_random_deliveries_never_5xx(web: Web, body: bytes,
                                                                      headers: dict[str, str], auth: str) -> None:
    _check(await web.raw("/webhooks/alertmanager", body, {**headers, "Authorization": auth}))


@fuzz_settings
@given(body=_bodies(og_events, og_closed), headers=extra_headers, token=st.sampled_from(OG_TOKENS))
async def test_opsgenie_authenticated_random_deliveries_never_5xx(web: Web, body: bytes, headers: dict[str, str],
                                                                  token: str) -> None:
    _check(await web.raw("/webhooks/opsgenie", body, {**headers, "X-Closeloop-Token": token}))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200), credential=header_text)
async def test_unauthenticated_random_deliveries_401(web: Web, body: bytes, credential: str) -> None:
    for url, headers in [
        ("/webhooks/incidentio", {"webhook-id": "m", "webhook-timestamp": credential, "webhook-signature": credential}),
        ("/webhooks/alertmanager", {"Authorization": f"Bearer {credential}"}),
        ("/webhooks/opsgenie", {"X-Closeloop-Token": credential}),
    ]:
        r = await web.raw(url, body, headers)
        assert r.status_code == 401, (url, r.status_code, r.text)
        assert "error" in r.json()


# --------------------------------------------------------------------------- the generic API

api_incidents = st.fixed_dictionaries({}, optional={
    "source": maybe(st.sampled_from(["api", "cli", "Bad Source", "x" * 40]) | st.text(max_size=12)),
    "external_id": maybe(st.sampled_from(["INC-FZ1", "INC-FZ2", "a/b", "has space"]) | st.text(max_size=12)),
    "title": maybe(st.text(max_size=600)),
    "severity": json_values,
    "services": maybe(st.lists(st.text(max_size=20) | json_values, max_size=3)),
    "started_at": maybe(st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01", "yesterday", "2024-13-40T99:00Z"])),
    "resolved_at": maybe(st.sampled_from(["2024-05-01T11:00:00+02:00", "now"]) | st.integers()),
    "commander": json_values,
    "participants": json_values,
    "links": maybe(st.lists(st.fixed_dictionaries({"title": json_values, "url": json_values}) | json_values,
                            max_size=2)),
    "dedup_key": json_values,
    "unknown": json_values,
})
api_valid = st.fixed_dictionaries({"external_id": st.sampled_from(["INC-FZV1", "INC-FZV2"]),
                                   "title": st.text(min_size=1, max_size=500).filter(str.strip)},
                                  optional={"severity": st.sampled_from(["SEV1", "SEV2"]),
                                            "services": st.lists(st.text(min_size=1, max_size=20), max_size=2)})
path_segment = st.sampled_from(["api", "cli", "INC-FZ1", "Bad%20Source", "%2F", "..", "x" * 300]) | st.text(
    alphabet=string.ascii_letters + string.digits + "-_.~%", min_size=1, max_size=20)


@fuzz_settings
@given(body=_bodies(api_incidents, api_valid), headers=extra_headers, token=st.sampled_from(TOKENS))
async def test_api_authenticated_random_incidents_never_5xx(web: Web, body: bytes, headers: dict[str, str],
                                                            token: str) -> None:
    # 403: a source other than "api" (these tokens are for the api namespace alone)
    _check(await web.raw("/api/incidents", body, {**headers, "Authorization": f"Bearer {token}"}), also=(403,))


@fuzz_settings
@given(source=path_segment, external_id=path_segment, body=st.one_of(st.just(b""), _bodies(api_incidents,
                                                                                           api_valid)))
async def test_api_resolve_random_paths_and_bodies_never_5xx(web: Web, source: str, external_id: str,
                                                             body: bytes) -> None:
    r = await web.raw(f"/api/incidents/{source}/{external_id}/resolve", body,
                      {"Authorization": f"Bearer {TOKENS[0]}"})
    assert r.status_code < 500, (r.status_code, r.text)
    assert isinstance(r.json(), dict)
    assert r.status_code in (202, 400, 403, 404, 413, 422), (r.status_code, r.text)
    if r.status_code != 202:
        assert isinstance(r.json().get("error"), str)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200), credential=header_text)
async def test_api_unauthenticated_random_requests_401(web: Web, body: bytes, credential: str) -> None:
    for url in ["/api/incidents", "/api/incidents/api/INC-FZ1/resolve"]:
        r = await web.raw(url, body, {"Authorization": f"Bearer {credential}"})
        assert r.status_code == 401, (url, r.status_code, r.text)
        assert "error" in r.json()
