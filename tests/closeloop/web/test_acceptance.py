"""The acceptance list of the incident triggers, for every source (PagerDuty, incident.io, Alertmanager,
Opsgenie and the generic API), checked on what Temporal and the store actually hold, not only on the HTTP
answer:

- a payload shaped as the vendor documents it, correctly signed, starts one lifecycle with the incident's
  fields, and the incident is recorded in the store with its fingerprint (also when its severity needs
  no postmortem);
- a wrong or missing signature (401), malformed JSON (400), a missing field (422) and an oversized body
  (413) each get a JSON reason, and the server has no workflow for that incident, nor the store a row;
- duplicate deliveries, one after another or at the same moment, leave exactly one run.

The test server has no visibility store, so "what was started" is asked per workflow id: describe answers
NOT_FOUND when the server never started it, and the latest run's id when it did (a second run would be the
latest)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.service import RPCError, RPCStatusCode

from closeloop.models import Stage, compute_fingerprint
from closeloop.standins.spec import SPECS_DIR
from closeloop.store.tables import IncidentRow
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.closeloop.web.conftest import (
    AM_TOKENS,
    OG_TOKENS,
    PD_SECRETS,
    TOKENS,
    Web,
    iio_headers,
    make_web,
    pd_envelope,
    sign,
    webhook_limit,
)
from tests.closeloop.web.test_alertmanager import am_group
from tests.closeloop.web.test_api import incident_body
from tests.closeloop.web.test_incidentio import iio_event
from tests.closeloop.web.test_opsgenie import og_event
from tests.temporal_env import App

OTHER_IIO_SECRET = "whsec_" + "b3RoZXIta2V5LW5vdC1vdXJzLTAxMjM0NTY3"


def _am_key(key: str) -> str:
    return f'{{}}/{{}}:{{alertname="{key}"}}'


def _am_id(key: str) -> str:
    return hashlib.sha256(_am_key(key).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    payload: Callable[[str], Any]  # a documented payload for the incident `key`
    external_id: Callable[[str], str]
    untitled: Callable[[str], Any]  # the same incident, missing a field closeloop needs
    missing: str  # how the 422 names that field
    auth: Callable[[bytes], dict[str, str]]  # correct signature / credentials for a raw body
    wrong: Callable[[bytes], dict[str, str]]  # wrong ones
    title: str

    def workflow_id(self, key: str) -> str:
        return f"postmortem/{self.name}/{self.external_id(key)}"


SOURCES = [
    Source("pagerduty", "/webhooks/pagerduty", lambda k: pd_envelope(f"P{k}"), lambda k: f"P{k}",
           lambda k: pd_envelope(f"P{k}", title=None), "event.data.title",
           lambda raw: {"X-PagerDuty-Signature": sign(raw, PD_SECRETS[0])},
           lambda raw: {"X-PagerDuty-Signature": sign(raw, "not-our-secret")}, "A little bump in the road"),
    Source("incidentio", "/webhooks/incidentio", lambda k: iio_event(f"01{k}"), lambda k: f"01{k}",
           lambda k: iio_event(f"01{k}", name=None), "incident_updated_v2.name",
           lambda raw: iio_headers(raw), lambda raw: iio_headers(raw, OTHER_IIO_SECRET), "Our database is sad"),
    Source("alertmanager", "/webhooks/alertmanager", lambda k: am_group(_am_key(k)), _am_id,
           lambda k: am_group(_am_key(k), commonAnnotations={}, commonLabels={},
                              alerts=[{"status": "resolved", "labels": {"service": "checkout"}}]),
           "commonAnnotations.summary",
           lambda raw: {"Authorization": f"Bearer {AM_TOKENS[0]}"},
           lambda raw: {"Authorization": f"Bearer {AM_TOKENS[0]}-not"}, "Checkout error rate above 5%"),
    Source("opsgenie", "/webhooks/opsgenie", lambda k: og_event(f"og-{k}"), lambda k: f"og-{k}",
           lambda k: og_event(f"og-{k}", message=None), "alert.message",
           lambda raw: {"X-Closeloop-Token": OG_TOKENS[0]},
           lambda raw: {"X-Closeloop-Token": "og-token-guessed"}, "Checkout p99 latency above 2s"),
    Source("api", "/api/incidents", lambda k: incident_body(f"INC-{k}"), lambda k: f"INC-{k}",
           lambda k: {key: v for key, v in incident_body(f"INC-{k}").items() if key != "title"}, "title",
           lambda raw: {"Authorization": f"Bearer {TOKENS[0]}"},
           lambda raw: {"Authorization": f"Bearer {TOKENS[0]}-not"}, "Checkout returns 500s"),
]
BY_NAME = {s.name: s for s in SOURCES}
each_source = pytest.mark.parametrize("src", SOURCES, ids=[s.name for s in SOURCES])


# --------------------------------------------------------------------------- what Temporal and the store hold


async def run_id(app: App, workflow_id: str) -> str | None:
    """The latest run of the workflow on the server, or None if the server never started it."""
    client = app.client
    try:  # the raw RPC: the SDK's describe() decodes search attributes, which the test server mangles
        desc = await client.workflow_service.describe_workflow_execution(DescribeWorkflowExecutionRequest(
            namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)))
        return desc.workflow_execution_info.execution.run_id
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def started_run(app: App, workflow_id: str, timeout: float = 30.0) -> str:
    """The run the inbox's forwarder started (a moment after the 202)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (run := await run_id(app, workflow_id)) is None:
        assert asyncio.get_running_loop().time() < deadline, f"{workflow_id} was never started"
        await asyncio.sleep(0.05)
    return run


async def assert_nothing_started(web: Web, src: Source, key: str) -> None:
    assert web.app.store.inbox.entry(src.name, src.external_id(key)) is None, f"{key} is in the inbox"
    assert await run_id(web.app, src.workflow_id(key)) is None, f"{src.workflow_id(key)} was started"
    assert web.app.store.records.get_incident(src.name, src.external_id(key)) is None
    assert web.app.handles == []


async def assert_one_run(web: Web, workflow_id: str, run: str) -> None:
    """The latest run is still `run`, and its history began once, as the first run of its chain."""
    assert await run_id(web.app, workflow_id) == run
    history = await web.app.client.get_workflow_handle(workflow_id, run_id=run).fetch_history()
    starts = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED]
    assert len(starts) == 1
    attrs = starts[0].workflow_execution_started_event_attributes
    assert attrs.first_execution_run_id == run and not attrs.continued_execution_run_id


async def stored(app: App, source: str, external_id: str, timeout: float = 30.0) -> IncidentRow:
    """The incident's row, once the lifecycle's first activity has recorded it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        with app.store.db.session() as s:
            row = s.scalar(select(IncidentRow).where(IncidentRow.source == source,
                                                     IncidentRow.external_id == external_id))
            if row is not None:
                s.expunge(row)
                return row
        assert asyncio.get_running_loop().time() < deadline, f"{source}:{external_id} was never recorded"
        await asyncio.sleep(0.05)


async def send(web: Web, src: Source, payload: Any = None, *, raw: bytes | None = None,
               headers: dict[str, str] | None = None) -> Any:
    body = raw if raw is not None else json.dumps(payload).encode()
    return await web.raw(src.url, body, src.auth(body) if headers is None else headers)


# --------------------------------------------------------------------------- a documented payload


@each_source
async def test_documented_payload_starts_one_lifecycle_and_records_the_incident(web: Web, src: Source) -> None:
    r = await send(web, src, src.payload("ACC1"))
    assert r.status_code == 202, r.text
    assert r.json() == {"workflow_id": src.workflow_id("ACC1"), "new": True}
    assert await started_run(web.app, src.workflow_id("ACC1"))

    inc = (await web.state(src.workflow_id("ACC1"))).plan.incident
    assert (inc.source, inc.external_id, inc.title) == (src.name, src.external_id("ACC1"), src.title)
    assert inc.services == (["checkout", "cart"] if src.name == "opsgenie" else
                            [] if src.name == "incidentio" else ["checkout"])
    assert inc.fingerprint == compute_fingerprint(inc.services, inc.dedup_key, inc.title)

    row = await stored(web.app, src.name, src.external_id("ACC1"))
    assert row.fingerprint == inc.fingerprint
    assert (row.title, row.severity, row.postmortem_required) == (inc.title, inc.severity, True)
    assert web.app.store.records.get_incident(src.name, src.external_id("ACC1")) == inc


async def test_an_incident_that_needs_no_postmortem_is_recorded_too(web: Web) -> None:
    """P4 -> SEV4, and the test config's SEV4 policy says postmortem_required = false: no postmortem, but
    the incident is in the store with its fingerprint, for the recurrence checks of other incidents."""
    r = await send(web, BY_NAME["opsgenie"], og_event("og-sev4", priority="P4"))
    assert r.status_code == 202, r.text
    row = await stored(web.app, "opsgenie", "og-sev4")
    assert (row.severity, row.postmortem_required) == ("SEV4", False)
    assert row.fingerprint == compute_fingerprint(["checkout", "cart"], "checkout-latency",
                                                  "Checkout p99 latency above 2s")
    handle = web.app.client.get_workflow_handle_for(PostmortemWorkflow.run, "postmortem/opsgenie/og-sev4")
    assert (await handle.result()).stage == Stage.skipped


def _pagerduty_documented_envelope() -> dict[str, Any]:
    """The webhook payload example of PagerDuty's own v3 documentation (shared/specs/pagerduty-webhooks),
    turned into the `incident.resolved` event that the same documentation lists."""
    doc = (SPECS_DIR / "pagerduty-webhooks" / "01-Overview.md").read_text()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", doc, re.S)]
    example = next(b for b in blocks if isinstance(b, dict) and b.get("event", {}).get("resource_type") == "incident")
    assert "incident.resolved" in doc
    example["event"]["event_type"] = "incident.resolved"
    example["event"]["data"]["status"] = "resolved"
    return example


async def test_pagerduty_example_from_its_documentation(web: Web) -> None:
    r = await web.pagerduty(_pagerduty_documented_envelope())
    assert r.status_code == 202, r.text
    assert r.json() == {"workflow_id": "postmortem/pagerduty/PGR0VU2", "new": True}
    inc = (await web.state("postmortem/pagerduty/PGR0VU2")).plan.incident
    assert (inc.title, inc.severity, inc.services) == ("A little bump in the road", "SEV1", ["API Service"])
    assert inc.dedup_key == "d3640fbd41094207a1c11e58e46b1662"
    assert inc.links[0].url == "https://acme.pagerduty.com/incidents/PGR0VU2"
    assert (await stored(web.app, "pagerduty", "PGR0VU2")).fingerprint == inc.fingerprint


# --------------------------------------------------------------------------- refused: nothing starts


@each_source
async def test_wrong_signature_401_starts_nothing(web: Web, src: Source) -> None:
    raw = json.dumps(src.payload("BADSIG")).encode()
    r = await send(web, src, raw=raw, headers=src.wrong(raw))
    assert r.status_code == 401
    assert isinstance(r.json()["error"], str)
    await assert_nothing_started(web, src, "BADSIG")


@each_source
async def test_missing_signature_401_starts_nothing(web: Web, src: Source) -> None:
    r = await send(web, src, src.payload("NOSIG"), headers={})
    assert r.status_code == 401
    assert "missing" in r.json()["error"]
    await assert_nothing_started(web, src, "NOSIG")


async def test_expired_incidentio_timestamp_401_starts_nothing(web: Web) -> None:
    import time

    for offset in (-301, 301):
        r = await web.incidentio(iio_event("01EXPIRED"), timestamp=int(time.time()) + offset)
        assert r.status_code == 401
        assert r.json() == {"error": "timestamp outside tolerance"}
    await assert_nothing_started(web, BY_NAME["incidentio"], "EXPIRED")


@each_source
async def test_malformed_json_400_starts_nothing(web: Web, src: Source) -> None:
    raw = json.dumps(src.payload("BADJSON")).encode()[:-3]  # cut short: correctly signed, not JSON
    r = await send(web, src, raw=raw)
    assert r.status_code == 400
    assert r.json()["error"].startswith("malformed JSON")
    await assert_nothing_started(web, src, "BADJSON")


@each_source
async def test_missing_field_422_starts_nothing(web: Web, src: Source) -> None:
    r = await send(web, src, src.untitled("NOTITLE"))
    assert r.status_code == 422, r.text
    assert src.missing in r.json()["error"]
    await assert_nothing_started(web, src, "NOTITLE")


@each_source
async def test_oversized_body_413_starts_nothing(app: App, src: Source) -> None:
    # the API's limit is [web] max_body_bytes; a webhook's, its vendor's documented maximum
    limit = 2048 if src.name == "api" else webhook_limit(src.name)
    payload = {**src.payload("HUGE"), "padding": "x" * limit}  # correctly signed, over the limit
    raw = json.dumps(payload).encode()
    async with make_web(app, max_body_bytes=2048) as http:
        web = Web(http=http, app=app)
        r = await send(web, src, raw=raw)
        assert r.status_code == 413
        assert r.json() == {"error": f"body too large: the limit is {limit} bytes"}
        await assert_nothing_started(web, src, "HUGE")


# --------------------------------------------------------------------------- duplicates: one run


@each_source
async def test_duplicate_deliveries_leave_one_run(web: Web, src: Source) -> None:
    wid = src.workflow_id("DUP1")
    raw = json.dumps(src.payload("DUP1")).encode()
    first = await send(web, src, raw=raw)
    assert first.json() == {"workflow_id": wid, "new": True}
    run = await started_run(web.app, wid)
    again = await asyncio.gather(*(send(web, src, raw=raw) for _ in range(3)))
    assert [(r.status_code, r.json()) for r in again] == [(202, {"workflow_id": wid, "new": False})] * 3
    await web.state(wid)  # let the lifecycle run its first steps; still the same run
    await assert_one_run(web, wid, run)


@each_source
async def test_simultaneous_deliveries_start_one_run(web: Web, src: Source) -> None:
    wid = src.workflow_id("DUP2")
    raw = json.dumps(src.payload("DUP2")).encode()
    answers = await asyncio.gather(*(send(web, src, raw=raw) for _ in range(4)))
    assert all(r.status_code == 202 for r in answers), [r.text for r in answers]
    assert sorted(r.json()["new"] for r in answers) == [False, False, False, True]
    run = await started_run(web.app, wid)
    await assert_one_run(web, wid, run)
    assert (await stored(web.app, src.name, src.external_id("DUP2"))).fingerprint
