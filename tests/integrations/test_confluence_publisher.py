"""ConfluencePublisher over HTTP against the Confluence Cloud stand-in; every JSON response the stand-in serves is
checked against Atlassian's v2 OpenAPI description (closeloop/standins/spec.py), a test fails on any violation."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from closeloop.config import ConfigError
from closeloop.integrations.base import Document, IntegrationError
from closeloop.integrations.confluence import ConfluencePlugin
from closeloop.integrations.confluence.publisher import (
    PROPERTY_KEY,
    ConfluencePublisher,
    page_title,
    storage_format,
)
from closeloop.integrations.confluence.settings import ENV_API_TOKEN, ConfluenceSettings
from closeloop.integrations.plugin import PluginContext
from closeloop.secrets import Secrets
from closeloop.standins.confluence import ConfluenceStandin
from tests.standins.fixtures import CONFLUENCE_SPEC, validated

TOKEN = "s3cret-ATATT-token"
EMAIL = "closeloop@example.com"
PM = "postmortem/pagerduty/P123"
HTML = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>x</title>
<style>body { color: red; }</style></head><body>
<h1>Postmortem: Checkout down <span class="sev">SEV1</span></h1>
<table class="facts"><tr><th>Incident</th><td>pagerduty:P123 &amp; more &lt;3</td></tr></table>
<p>First line<br>second line &mdash; done
<ul><li>one<li>two</ul>
<img src="https://example.com/a.png" alt="a &quot;b&quot;">
</body></html>"""


def document(html: str = HTML) -> Document:
    return Document(postmortem_id=PM, title="Postmortem: Checkout down", markdown="# x", html=html)


@pytest.fixture
def standin() -> Iterator[ConfluenceStandin]:
    with validated(ConfluenceStandin, CONFLUENCE_SPEC, email=EMAIL, token=TOKEN, must_serve=True) as server:
        yield server


def publisher(standin: ConfluenceStandin, token: str = TOKEN, **kw: object) -> ConfluencePublisher:
    settings = ConfluenceSettings.model_validate({"base_url": standin.site, "space_key": "ENG", "email": EMAIL,
                                                  "timeout": 2.0, **kw})
    return ConfluencePublisher(settings, api_token=token)


def only_page(standin: ConfluenceStandin, title: str) -> dict[str, object]:
    pages = [p for p in standin.pages.values() if p["title"] == title]
    assert len(pages) == 1, pages
    return pages[0]


def test_storage_format_is_well_formed_xhtml_of_the_body() -> None:
    out = storage_format(HTML)
    ET.fromstring(f"<root>{out}</root>")  # well-formed
    assert "<style" not in out and "<title" not in out and "<html" not in out and "DOCTYPE" not in out
    assert "<br />" in out and "&amp; more &lt;3" in out and "\u2014" in out
    assert '<img src="https://example.com/a.png" alt="a &quot;b&quot;" />' in out
    assert "<li>one</li><li>two</li></ul>" in out


def test_publish_creates_a_page_under_the_parent_with_the_property(standin: ConfluenceStandin) -> None:
    space = standin.space_id("ENG")
    parent = standin.add_page(space, "Postmortems", "<p>all of them</p>")
    url = publisher(standin, parent_id=parent).publish(document(), f"{PM}/publish")

    page = only_page(standin, "Postmortem: Checkout down (pagerduty/P123)")
    assert page["spaceId"] == space and page["parentId"] == parent and page["version"] == 1
    assert "Checkout down" in str(page["body"]) and "<style" not in str(page["body"])
    assert standin.properties[str(page["id"])][PROPERTY_KEY]["value"] == {"postmortem_id": PM}
    assert url == f"{standin.site}/spaces/ENG/pages/{page['id']}/Postmortem%3A+Checkout+down+%28pagerduty%2FP123%29"
    assert standin.requests["GET /spaces"] == 1


def test_without_a_parent_the_page_goes_under_the_homepage(standin: ConfluenceStandin) -> None:
    space = standin.space_id("ENG")
    publisher(standin, space_key=None, space_id=space).publish(document(), "k")
    page = only_page(standin, page_title(document()))
    assert page["parentId"] == standin.spaces[space]["homepage"]
    assert standin.requests["GET /spaces"] == 0


def test_republish_updates_the_same_page_in_place(standin: ConfluenceStandin) -> None:
    pub = publisher(standin)
    first = pub.publish(document(), f"{PM}/publish")
    second = pub.publish(document(HTML.replace("First line", "Revised line")), f"{PM}/publish")
    assert second == first
    page = only_page(standin, page_title(document()))
    assert page["version"] == 2 and "Revised line" in str(page["body"]) and "First line" not in str(page["body"])
    assert standin.requests["POST /pages"] == 1 and standin.requests["PUT /pages/{id}"] == 1
    pub.publish(document(HTML.replace("First line", "Revised line")), f"{PM}/publish")  # unchanged: no new version
    assert only_page(standin, page_title(document()))["version"] == 2


def test_lost_create_response_then_the_retry_finds_and_updates_the_page(standin: ConfluenceStandin) -> None:
    pub = publisher(standin)
    pub.space_id()
    standin.lose_next_create_response()
    with pytest.raises(IntegrationError) as lost:
        pub.publish(document(), f"{PM}/publish")
    assert lost.value.retryable
    page = only_page(standin, page_title(document()))  # created, though the answer never came
    assert standin.properties[str(page["id"])] == {}

    url = pub.publish(document(HTML.replace("First line", "Retried")), f"{PM}/publish")  # the activity's retry
    page = only_page(standin, page_title(document()))
    assert str(page["id"]) in url and "Retried" in str(page["body"]) and page["version"] == 2
    assert standin.properties[str(page["id"])][PROPERTY_KEY]["value"] == {"postmortem_id": PM}
    assert standin.requests["POST /pages"] == 1
    assert len([p for p in standin.pages.values() if p["title"].startswith("Postmortem")]) == 1


def test_a_page_of_that_title_of_another_postmortem_is_not_taken(standin: ConfluenceStandin) -> None:
    pub = publisher(standin)
    pub.publish(document(), "k")
    page = only_page(standin, page_title(document()))
    standin.properties[str(page["id"])][PROPERTY_KEY]["value"] = {"postmortem_id": "postmortem/other/1"}
    with pytest.raises(IntegrationError) as err:
        pub.publish(document(), "k")
    assert not err.value.retryable and "another postmortem" in str(err.value)


def test_version_conflict_reads_again_and_retries_once(standin: ConfluenceStandin) -> None:
    pub = publisher(standin)
    pub.publish(document(), "k")
    page = only_page(standin, page_title(document()))
    standin.fail_next(1, status=409, path="PUT /wiki/api/v2/pages/{id}")
    pub.publish(document(HTML.replace("First line", "After conflict")), "k")
    assert "After conflict" in str(page["body"]) and standin.requests["PUT /pages/{id}"] == 2


def test_server_errors_and_rate_limits_are_retryable(standin: ConfluenceStandin) -> None:
    pub = publisher(standin)
    standin.fail_next(1, status=503)
    with pytest.raises(IntegrationError) as err:
        pub.publish(document(), "k")
    assert err.value.retryable
    standin.rate_limit_next(retry_after=7)
    with pytest.raises(IntegrationError) as rate:
        pub.publish(document(), "k")
    assert rate.value.retryable and rate.value.retry_after == 7  # type: ignore[attr-defined]
    assert pub.publish(document(), "k").startswith(standin.site)


def test_a_timeout_is_retryable() -> None:
    import socket

    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        settings = ConfluenceSettings(base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/wiki", space_id="1",
                                      email=EMAIL, timeout=0.3)
        with pytest.raises(IntegrationError) as err:
            ConfluencePublisher(settings, api_token=TOKEN).publish(document(), "k")
    assert err.value.retryable and "timed out" in str(err.value)


def test_401_is_not_retryable_and_the_token_is_never_shown(standin: ConfluenceStandin) -> None:
    wrong = "wrong-ATATT-token"
    with capture_logs() as logs:
        with pytest.raises(IntegrationError) as err:
            publisher(standin, token=wrong).publish(document(), "k")
    assert not err.value.retryable and err.value.status == 401  # type: ignore[attr-defined]
    message = str(err.value)
    assert ENV_API_TOKEN in message and EMAIL in message
    assert wrong not in message and TOKEN not in message
    assert wrong not in repr(logs) and wrong not in repr(publisher(standin, token=wrong))
    assert standin.pages.keys() == {standin.spaces[standin.space_id("ENG")]["homepage"]}


def test_missing_token_is_a_config_error_naming_the_secret(standin: ConfluenceStandin) -> None:
    from closeloop.config import Config

    config = Config()
    config.plugin_settings[("publishers", "confluence")] = ConfluenceSettings(base_url=standin.site, space_key="ENG",
                                                                              email=EMAIL)
    ctx = PluginContext(config=config, directory=config.people_directory(), secrets=Secrets({}))
    with pytest.raises(ConfigError, match=ENV_API_TOKEN):
        ConfluencePlugin().publishers(ctx)
    ctx.secrets = Secrets({ENV_API_TOKEN: TOKEN})
    [pub] = ConfluencePlugin().publishers(ctx)
    assert pub.publish(document(), "k").startswith(standin.site)


def test_settings_need_exactly_one_space() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="exactly one of space_id and space_key"):
        ConfluenceSettings(base_url="https://acme.atlassian.net/wiki", email=EMAIL)
    with pytest.raises(ValidationError):
        ConfluenceSettings(base_url="https://acme.atlassian.net/wiki", email=EMAIL, space_key="ENG", token="x")


def test_the_publish_activity_publishes_through_every_publisher_and_returns_the_page(
        standin: ConfluenceStandin, tmp_path: Path) -> None:
    from closeloop.activities.documents import DocumentActivities
    from closeloop.integrations.base import Publisher
    from closeloop.models import Incident, Plan, PostmortemState, Stage
    from closeloop.policy import Policy

    class Local(Publisher):
        name = "local"
        published: list[str] = []

        def publish(self, document: Document, idempotency_key: str) -> str:
            self.published.append(document.postmortem_id)
            return "/data/documents/x.html"

    incident = Incident(source="pagerduty", external_id="P9", title="Search slow")
    plan = Plan(postmortem_id=incident.workflow_id, incident=incident, policy=Policy(), owner="alice", reviewers=[],
                attendees=["alice"], people=["alice"])
    state = PostmortemState(plan=plan, owner="alice", stage=Stage.in_review)
    local = Local()
    ref = DocumentActivities([local, publisher(standin)], tmp_path, None).publish_document(state)
    assert local.published == [incident.workflow_id]
    page = only_page(standin, "Postmortem: Search slow (pagerduty/P9)")
    assert ref.startswith(standin.site) and str(page["id"]) in ref
    assert DocumentActivities(local, tmp_path, None).publish_document(state) == "/data/documents/x.html"
