"""PagerDutyTimelineSource through httpx, over HTTP, against the PagerDuty REST stand-in. Every JSON
response the stand-in serves is checked against PagerDuty's OpenAPI description; a test fails on any
violation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from closeloop.integrations.base import HttpIntegrationError, IntegrationError, progress_to
from closeloop.integrations.pagerduty.timeline import PagerDutyTimelineConfig, PagerDutyTimelineSource
from closeloop.models import Incident
from tests.standins.fixtures import PAGERDUTY_SPEC, validated
from tests.standins.pagerduty import PagerDutyStandin

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
PATH = "GET /incidents/{id}/log_entries"


@pytest.fixture
def standin() -> Iterator[PagerDutyStandin]:
    with validated(PagerDutyStandin, PAGERDUTY_SPEC, token="pd-token") as server:
        yield server


def source(standin: PagerDutyStandin, *, token: str = "pd-token", page_size: int = 100) -> PagerDutyTimelineSource:
    return PagerDutyTimelineSource(PagerDutyTimelineConfig(url=standin.url, token=token, page_size=page_size,
                                                           timeout=2.0))


def pd_incident(external_id: str = "PABC123", source_name: str = "pagerduty") -> Incident:
    return Incident(source=source_name, external_id=external_id, title="Checkout returns 500s",
                    started_at=T0, resolved_at=T0 + timedelta(hours=1))


def lifecycle(standin: PagerDutyStandin, incident_id: str = "PABC123") -> None:
    standin.add_incident(incident_id, [
        ("trigger_log_entry", T0 + timedelta(minutes=3), "Triggered through the API"),
        ("notify_log_entry", T0 + timedelta(minutes=3, seconds=5), "Notified Alice by push", {"agent": "Alice"}),
        ("acknowledge_log_entry", T0 + timedelta(minutes=8), "Acknowledged by Alice", {"agent": "Alice"}),
        ("escalate_log_entry", T0 + timedelta(minutes=12), "Escalated to Bob", {"assignees": ["Bob"]}),
        ("assign_log_entry", T0 + timedelta(minutes=13), "Assigned to Bob", {"agent": "Alice", "assignees": ["Bob"]}),
        ("annotate_log_entry", T0 + timedelta(minutes=20), "Note added",
         {"agent": "Bob", "note": "Rolled back deploy 4711"}),
        ("resolve_log_entry", T0 + timedelta(minutes=55), "Resolved by Bob", {"agent": "Bob"}),
    ])


def test_log_entries_become_timeline_events_with_key_moments(standin: PagerDutyStandin) -> None:
    lifecycle(standin)
    events = source(standin).fetch(pd_incident())
    assert [(e.kind, e.key_moment) for e in events] == [
        ("detection", True), ("notification", False), ("acknowledge", True), ("escalation", True),
        ("escalation", False), ("note", False), ("resolution", True),
    ]
    assert all(e.source == "pagerduty" for e in events)
    ack = events[2]
    assert ack.at == T0 + timedelta(minutes=8) and ack.actor == "Alice" and ack.text == "Acknowledged by Alice"
    assert ack.url and ack.url.startswith(standin.url + "/incidents/PABC123/log_entries/")
    assert events[5].text == "Note added: Rolled back deploy 4711" and events[5].actor == "Bob"
    assert events[0].actor is None  # triggered by the service, not a person


def test_pagination_follows_more_across_pages(standin: PagerDutyStandin) -> None:
    standin.add_incident("PBIG", [("notify_log_entry", T0 + timedelta(seconds=i), f"Notified #{i}")
                                  for i in range(23)])
    pages: list[tuple[object, ...]] = []
    with progress_to(lambda *details: pages.append(details)):  # the activity heartbeats per page
        events = source(standin, page_size=5).fetch(pd_incident("PBIG"))
    assert [e.text for e in events] == [f"Notified #{i}" for i in range(23)]
    assert standin.requests[PATH] == 5  # 5 + 5 + 5 + 5 + 3
    assert pages == [(0,), (5,), (10,), (15,), (20,)]


def test_an_incident_from_elsewhere_asks_nothing(standin: PagerDutyStandin) -> None:
    lifecycle(standin)
    assert source(standin).fetch(pd_incident(source_name="api")) == []
    assert standin.requests[PATH] == 0


def test_server_errors_are_retryable_and_auth_errors_are_not(standin: PagerDutyStandin) -> None:
    lifecycle(standin)
    standin.fail_next(1, status=500)
    with pytest.raises(HttpIntegrationError) as failed:
        source(standin).fetch(pd_incident())
    assert failed.value.retryable and failed.value.status == 500

    with pytest.raises(HttpIntegrationError) as denied:
        source(standin, token="wrong").fetch(pd_incident())
    assert not denied.value.retryable and denied.value.status == 401

    standin.rate_limit_next(retry_after=7)
    with pytest.raises(HttpIntegrationError) as limited:
        source(standin).fetch(pd_incident())
    assert limited.value.retryable and limited.value.status == 429 and limited.value.retry_after == 7

    with pytest.raises(HttpIntegrationError) as missing:
        source(standin).fetch(pd_incident("PNOPE"))
    assert not missing.value.retryable and missing.value.status == 404
    assert len(source(standin).fetch(pd_incident())) == 7  # and after the faults, everything



@pytest.mark.parametrize(("external_id", "sent"), [
    ("x?admin=1#", "/incidents/x%3Fadmin%3D1%23/log_entries"),
    ("PABC123/../..", "/incidents/PABC123%2F..%2F../log_entries"),
    ("..", None),
])
def test_an_id_is_one_path_segment_never_another_resource(standin: PagerDutyStandin, external_id: str,
                                                          sent: str | None) -> None:
    """`..` would make the fetch the account-wide /log_entries (every incident's entries): it is refused before
    any request; `?`/`#`/`/` stay inside the one segment. (model_construct: such ids are refused at the edge
    now, but one recorded before may still be fetched.)"""
    lifecycle(standin, "PABC123")
    lifecycle(standin, "POTHER1")
    inc = Incident.model_construct(source="pagerduty", external_id=external_id, title="x", started_at=T0,
                                   resolved_at=T0 + timedelta(hours=1))
    with pytest.raises(IntegrationError) as refused:
        source(standin).fetch(inc)
    assert not refused.value.retryable
    assert [p.split("?")[0] for p in standin.paths] == ([f"GET {sent}"] if sent else [])
    assert standin.requests == ({PATH: 1} if sent else {})
