"""SlackTimelineSource through slack-sdk, over HTTP, against the Slack stand-in. Every JSON response the
stand-in serves is checked against Slack's Swagger 2.0 description; a test fails on any violation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from closeloop.integrations.base import HttpIntegrationError
from closeloop.integrations.slack.settings import DEFAULT_REACTIONS
from closeloop.integrations.slack.timeline import SlackTimelineConfig, SlackTimelineSource, channel_from_url
from closeloop.models import Incident, Link, Person
from closeloop.standins.slack import SlackStandin
from tests.standins.fixtures import SLACK_SPEC, validated

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
ALICE = Person(key="alice", name="Alice", email="alice@example.com", handles={"slack": "U0ALICE"})


@pytest.fixture
def standin() -> Iterator[SlackStandin]:
    with validated(SlackStandin, SLACK_SPEC, token="xoxb-test") as server:
        server.add_channel("C0INCIDENT")
        yield server


def source(standin: SlackStandin, *, token: str = "xoxb-test", page_size: int = 200,
           **kw: object) -> SlackTimelineSource:
    settings = dict(token=token, base_url=standin.base_url, service_channels={"checkout": "C0INCIDENT"},
                    reactions=dict(DEFAULT_REACTIONS), slack_before=timedelta(minutes=30), page_size=page_size,
                    timeout=2.0)
    settings.update(kw)
    return SlackTimelineSource(SlackTimelineConfig(**settings), people={"alice": ALICE})  # type: ignore[arg-type]


def calls(standin: SlackStandin) -> int:
    """conversations.history requests, by either method (slack-sdk POSTs; Slack takes GET too)."""
    return standin.requests["GET /conversations.history"] + standin.requests["POST /conversations.history"]


def incident(**kw: object) -> Incident:
    fields: dict[str, object] = dict(source="api", external_id="INC-7", title="Checkout returns 500s",
                                     services=["checkout"], started_at=T0, resolved_at=T0 + timedelta(hours=1))
    fields.update(kw)
    return Incident(**fields)  # type: ignore[arg-type]


def test_messages_in_the_window_with_reactions_as_key_moments(standin: SlackStandin) -> None:
    post = standin.post
    post("C0INCIDENT", T0 - timedelta(hours=2), "lunch anyone?")  # before the window (start - 30m)
    post("C0INCIDENT", T0 - timedelta(minutes=10), "deploying 4711 to prod", user="U0BOB")
    post("C0INCIDENT", T0 + timedelta(minutes=4), "checkout 500s are paging", user="U0BOB",
         reactions={"rotating_light": ["U0ALICE"]})
    post("C0INCIDENT", T0 + timedelta(minutes=6), "looking", reactions={"eyes": ["U0BOB"], "+1": ["U0CAROL"]})
    post("C0INCIDENT", T0 + timedelta(minutes=7), "", subtype="channel_join", user="U0CAROL")
    post("C0INCIDENT", T0 + timedelta(minutes=20), "rolled back 4711, error rate dropping",
         reactions={"+1": ["U0BOB"], "adhesive_bandage": ["U0ALICE", "U0BOB"]})
    post("C0INCIDENT", T0 + timedelta(minutes=58), "all clear", reactions={"white_check_mark": ["U0BOB"]})
    post("C0INCIDENT", T0 + timedelta(hours=3), "retro on thursday")  # after the resolution
    events = sorted(source(standin).fetch(incident()), key=lambda e: e.at)
    assert [(e.kind, e.key_moment, e.text) for e in events] == [
        ("message", False, "deploying 4711 to prod"),
        ("detection", True, "checkout 500s are paging"),
        ("acknowledge", True, "looking"),
        ("mitigation", True, "rolled back 4711, error rate dropping"),
        ("resolution", True, "all clear"),
    ]
    assert events[2].actor == "alice" and events[1].actor == "U0BOB"  # people by their slack handle
    assert events[2].at == T0 + timedelta(minutes=6)
    assert all(e.source == "slack" for e in events)


def test_cursor_paging_across_pages(standin: SlackStandin) -> None:
    for i in range(25):
        standin.post("C0INCIDENT", T0 + timedelta(minutes=1, seconds=i), f"update {i}")
    events = source(standin, page_size=10).fetch(incident())
    assert sorted(e.text for e in events) == sorted(f"update {i}" for i in range(25))
    assert calls(standin) == 3


def test_the_channel_comes_from_the_service_else_a_slack_link(standin: SlackStandin) -> None:
    standin.add_channel("C0FROMLINK")
    standin.post("C0FROMLINK", T0 + timedelta(minutes=5), "war room here")
    linked = incident(services=["search"], links=[
        Link(title="Runbook", url="https://wiki.example.com/runbook"),
        Link(title="War room", url="https://acme.slack.com/archives/C0FROMLINK")])
    assert [e.text for e in source(standin).fetch(linked)] == ["war room here"]
    assert source(standin).fetch(incident(services=["search"])) == []  # no channel: nothing asked
    assert calls(standin) == 1
    assert channel_from_url("https://app.slack.com/client/T0ACME1234/C0ABC123") == "C0ABC123"
    assert channel_from_url("https://evil.example.com/slack.com/archives/C0ABC123") is None


def test_errors_as_slack_sends_them(standin: SlackStandin) -> None:
    standin.post("C0INCIDENT", T0 + timedelta(minutes=5), "hello")
    standin.fail_next(1, status=500)
    with pytest.raises(HttpIntegrationError) as down:
        source(standin).fetch(incident())
    assert down.value.retryable and down.value.status == 500

    standin.rate_limit_next(retry_after=3)
    with pytest.raises(HttpIntegrationError) as limited:
        source(standin).fetch(incident())
    assert limited.value.retryable and limited.value.status == 429 and limited.value.retry_after == 3
    assert "ratelimited" in str(limited.value)

    with pytest.raises(HttpIntegrationError) as denied:
        source(standin, token="xoxb-wrong").fetch(incident())
    assert not denied.value.retryable and "invalid_auth" in str(denied.value)

    with pytest.raises(HttpIntegrationError) as missing:
        source(standin, service_channels={"checkout": "C0NOPE"}).fetch(incident())
    assert not missing.value.retryable and "channel_not_found" in str(missing.value)

    standin.error_next("internal_error")
    with pytest.raises(HttpIntegrationError) as internal:
        source(standin).fetch(incident())
    assert internal.value.retryable
    assert [e.text for e in source(standin).fetch(incident())] == ["hello"]
