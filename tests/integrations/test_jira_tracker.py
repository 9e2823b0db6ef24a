"""JiraTracker through the real `jira` client, over HTTP, against the Jira Cloud stand-in.

Every JSON response the stand-in serves is checked against Atlassian's v3 OpenAPI description
(closeloop/standins/spec.py); a test fails on any violation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY, generate_latest

from closeloop.integrations.base import IntegrationError, TicketRequest
from closeloop.integrations.jira.tracker import JiraConfig, JiraTracker, marker_label
from closeloop.models import Person
from closeloop.standins.jira import JiraStandin
from closeloop.standins.spec import SPECS_DIR, ResponseValidator
from tests.metrics_text import series, value
from tests.standins.fixtures import JIRA_SPEC, spec_validator, validated

BOB = Person(key="bob", name="Bob", email="bob@example.com", handles={"jira": "5b10ac8d82e05b22cc7d4ef5"})
MARKER = "closeloop:postmortem/api/INC-42/item-1"


@pytest.fixture(scope="module")
def validator() -> ResponseValidator:
    return spec_validator(JIRA_SPEC)


@pytest.fixture
def standin() -> Iterator[JiraStandin]:
    with validated(JiraStandin, JIRA_SPEC, project="CL", users={BOB.handles["jira"]: "Bob"}, max_results=50) as server:
        yield server


@pytest.fixture
def tracker(standin: JiraStandin) -> JiraTracker:
    return JiraTracker(JiraConfig(url=standin.url, email="closeloop@example.com", api_token="t", project="CL",
                                  page_size=50, timeout=1.0), people={"bob": BOB})


def request(marker: str = MARKER, title: str = "Validate config before push") -> TicketRequest:
    return TicketRequest(marker=marker, title=title,
                         body="From the postmortem of INC-42: https://closeloop.example.com/postmortems/api/INC-42",
                         assignee=BOB, priority="P1", due_at=datetime(2026, 12, 1, 17, tzinfo=UTC),
                         labels=["postmortem", "service checkout"])


def test_ensure_ticket_creates_the_issue_with_the_right_fields(tracker: JiraTracker, standin: JiraStandin) -> None:
    ticket = tracker.ensure_ticket(request())
    assert ticket.key == "CL-1" and ticket.status == "open"
    assert ticket.url == f"{standin.url}/browse/CL-1"
    issue = standin.issues["CL-1"]
    assert issue["summary"] == "Validate config before push"
    assert issue["assignee"] == "5b10ac8d82e05b22cc7d4ef5"
    assert issue["priority"] == "Highest"
    assert issue["duedate"] == "2026-12-01"
    assert issue["issuetype"] == "Task"
    assert set(issue["labels"]) == {"closeloop", "postmortem", "service-checkout", marker_label(MARKER)}
    assert "https://closeloop.example.com/postmortems/api/INC-42" in issue["description"]
    assert MARKER in issue["description"]
    assert standin.requests["GET /rest/api/2/serverInfo"] == 1


def test_ensure_ticket_again_returns_the_same_issue(tracker: JiraTracker, standin: JiraStandin) -> None:
    first = tracker.ensure_ticket(request())
    again = tracker.ensure_ticket(request())
    assert again.key == first.key
    assert len(standin.issues) == 1
    assert standin.requests["POST /rest/api/2/issue"] == 1
    other = tracker.ensure_ticket(request(marker=MARKER.replace("item-1", "item-2"), title="Alert on 5xx"))
    assert other.key != first.key and len(standin.issues) == 2


def test_lost_create_response_then_retry_finds_the_issue(tracker: JiraTracker, standin: JiraStandin) -> None:
    _ = tracker.client  # connect first (serverInfo), so the fault hits the create
    standin.lose_next_create_response()
    with pytest.raises(IntegrationError) as lost:
        tracker.ensure_ticket(request())
    assert lost.value.retryable
    assert len(standin.issues) == 1  # created, though the answer never came
    ticket = tracker.ensure_ticket(request())  # the activity's retry
    assert ticket.key == "CL-1"
    assert len(standin.issues) == 1
    assert standin.requests["POST /rest/api/2/issue"] == 1


def test_statuses_of_120_keys_are_few_searches(tracker: JiraTracker, standin: JiraStandin) -> None:
    keys = [tracker.create(request(marker=f"m-{i}", title=f"item {i}")).key for i in range(120)]
    standin.set_status(keys[0], "Done", "Done")
    standin.set_status(keys[1], "Done", "Won't Do")
    standin.set_status(keys[2], "In Progress")
    before_gets = standin.requests["GET /rest/api/2/issue/{key}"]

    result = tracker.statuses([*keys, "CL-999"])

    assert standin.requests["GET /rest/api/2/search/jql"] == math.ceil(121 / 50)
    assert standin.requests["GET /rest/api/2/issue/{key}"] == before_gets  # no one-by-one GETs
    assert len(result) == 121
    assert result[keys[0]].status == "done" and result[keys[0]].resolution == "Done"
    assert result[keys[1]].status == "wont_do"
    assert result[keys[2]].status == "open"
    assert all(result[k].status == "open" for k in keys[3:])
    assert result["CL-999"].status == "deleted"


def test_rate_limit_is_a_retryable_error_with_retry_after(tracker: JiraTracker, standin: JiraStandin) -> None:
    _ = tracker.client
    standin.rate_limit_next(retry_after=7)
    with pytest.raises(IntegrationError) as err:
        tracker.ensure_ticket(request())
    assert err.value.retryable
    assert err.value.status == 429 and err.value.retry_after == 7  # type: ignore[attr-defined]
    assert standin.issues == {}
    assert tracker.ensure_ticket(request()).key == "CL-1"


def test_the_metrics_count_every_request_and_each_rate_limit(tracker: JiraTracker, standin: JiraStandin) -> None:
    """closeloop_tracker_calls_total{tracker="jira"} counts the HTTP requests the stand-in served (the session's
    response hook), closeloop_tracker_rate_limit_waits_total{tracker="jira"} each 429, as a scrape shows them."""
    _ = tracker.client
    before, served = series(generate_latest(REGISTRY).decode()), sum(standin.requests.values())
    standin.rate_limit_next(retry_after=7)
    with pytest.raises(IntegrationError):
        tracker.ensure_ticket(request())
    assert tracker.ensure_ticket(request()).key == "CL-1"
    after = series(generate_latest(REGISTRY).decode())

    def grew(name: str) -> float:
        return value(after, name, tracker="jira") - value(before, name, tracker="jira")

    assert grew("closeloop_tracker_calls_total") == sum(standin.requests.values()) - served >= 3
    assert grew("closeloop_tracker_rate_limit_waits_total") == 1


def test_server_error_is_retryable_and_client_errors_are_not(tracker: JiraTracker, standin: JiraStandin) -> None:
    _ = tracker.client
    standin.fail_next(1, status=500)
    with pytest.raises(IntegrationError) as err:
        tracker.statuses(["CL-1"])
    assert err.value.retryable

    nobody = Person(key="zed", name="Zed", email="zed@example.com", handles={"jira": "no-such-account"})
    with pytest.raises(IntegrationError) as bad:
        tracker.create(request().model_copy(update={"assignee": nobody}))
    assert not bad.value.retryable and bad.value.status == 400  # type: ignore[attr-defined]

    with pytest.raises(IntegrationError) as missing:
        tracker.comment("CL-404", "hello", "k-1")
    assert not missing.value.retryable and missing.value.status == 404  # type: ignore[attr-defined]


def test_timeout_is_retryable(tracker: JiraTracker, standin: JiraStandin) -> None:
    _ = tracker.client
    standin.delay_next(2.0, path="/rest/api/2/search/jql")
    with pytest.raises(IntegrationError) as err:
        tracker.statuses(["CL-1"])
    assert err.value.retryable


def test_comment_is_idempotent(tracker: JiraTracker, standin: JiraStandin) -> None:
    key = tracker.ensure_ticket(request()).key
    tracker.comment(key, "Reminder: due in 3 days.", "postmortem/api/INC-42/item-1/reminder-1")
    tracker.comment(key, "Reminder: due in 3 days.", "postmortem/api/INC-42/item-1/reminder-1")
    tracker.comment(key, "Reminder: due tomorrow.", "postmortem/api/INC-42/item-1/reminder-2")
    bodies = [c["body"] for c in standin.issues[key]["comments"]]
    assert len(bodies) == 2
    assert bodies[0].startswith("Reminder: due in 3 days.") and bodies[1].startswith("Reminder: due tomorrow.")
    assert standin.requests["POST /rest/api/2/issue/{key}/comment"] == 2


def test_close_moves_the_issue_to_done_once(tracker: JiraTracker, standin: JiraStandin) -> None:
    key = tracker.ensure_ticket(request()).key
    assert tracker.close(key).status == "done"
    assert tracker.close(key).status == "done"
    assert standin.requests["POST /rest/api/2/issue/{key}/transitions"] == 1
    key2 = tracker.ensure_ticket(request(marker="m-2")).key
    assert tracker.close(key2, resolution="Won't Do").status == "wont_do"


def test_validator_catches_a_wrong_response_and_applies_the_quirks(validator: ResponseValidator) -> None:
    assert validator.errors("GET", "/rest/api/2/issue/CL-1", 200, {"id": 10001, "key": "CL-1"})  # id is a string
    assert not validator.errors("GET", "/rest/api/2/serverInfo", 200,  # additionalProperties: false not enforced
                                {"baseUrl": "http://x", "deploymentType": "Cloud", "extraField": 1})
    assert not validator.errors("POST", "/rest/api/2/issue/CL-1/comment", 201, {"id": "1", "body": "plain v2 text"})
    assert validator.errors("GET", "/rest/api/2/search/jql", 200, {"issues": "nope"})
    assert validator.template_for("/rest/api/2/search/jql") == "/rest/api/3/search/jql"


def test_validator_allows_null_in_nullable_enums() -> None:
    github = SPECS_DIR / "github-rest-api.json"
    if not github.exists():
        pytest.skip(f"{github} is missing")
    v = ResponseValidator(github, path_aliases={})
    path = "/repos/o/r/issues/1"
    assert not [e for e in v.errors("GET", path, 200, {"state_reason": None}) if "state_reason" in e]
    assert [e for e in v.errors("GET", path, 200, {"state_reason": "bogus"}) if "state_reason" in e]


def test_statuses_follow_a_moved_issue_to_its_new_key(tracker: JiraTracker, standin: JiraStandin) -> None:
    keys = [tracker.create(request(marker=f"m-{i}", title=f"item {i}")).key for i in range(3)]
    moved = standin.move(keys[0], "OPS")
    standin.set_status(moved, "Done", "Done")
    standin.delete(keys[1])
    # Jira itself answers the old key with the issue under its new key, for JQL and GET alike
    assert [i["key"] for i in tracker.client.enhanced_search_issues(f"key in ({keys[0]})", json_result=True,
                                                                    fields="status")["issues"]] == [moved]
    before, served = tracker.request_count, sum(standin.requests.values())
    searches, gets = standin.requests["GET /rest/api/2/search/jql"], standin.requests["GET /rest/api/2/issue/{key}"]

    result = tracker.statuses(keys)

    assert moved == "OPS-1" and result[keys[0]].key == moved and result[keys[0]].status == "done"
    assert result[keys[0]].url.endswith("/browse/OPS-1")
    assert result[keys[1]].key == keys[1] and result[keys[1]].status == "deleted"  # GET answered 404
    assert result[keys[2]].key == keys[2] and result[keys[2]].status == "open"
    # one search; the answer carried a key nobody asked for, so one GET per missing key (two: moved, deleted)
    assert standin.requests["GET /rest/api/2/search/jql"] - searches == 1
    assert standin.requests["GET /rest/api/2/issue/{key}"] - gets == 2
    assert tracker.request_count - before == sum(standin.requests.values()) - served == 3


def test_statuses_of_deleted_issues_need_no_extra_requests(tracker: JiraTracker, standin: JiraStandin) -> None:
    keys = [tracker.create(request(marker=f"m-{i}", title=f"item {i}")).key for i in range(3)]
    standin.delete(keys[0])
    gets, searches = standin.requests["GET /rest/api/2/issue/{key}"], standin.requests["GET /rest/api/2/search/jql"]
    before, served = tracker.request_count, sum(standin.requests.values())

    result = tracker.statuses([*keys, "CL-404"])

    assert [result[k].status for k in [*keys, "CL-404"]] == ["deleted", "open", "open", "deleted"]
    assert standin.requests["GET /rest/api/2/issue/{key}"] == gets  # no unasked key came back: no move
    assert standin.requests["GET /rest/api/2/search/jql"] - searches == 1
    # the tracker counts every request it makes (here also the client's one-time GET /field)
    assert tracker.request_count - before == sum(standin.requests.values()) - served


def test_moved_then_moved_again_still_resolves_the_first_key(tracker: JiraTracker, standin: JiraStandin) -> None:
    key = tracker.create(request()).key
    second = standin.move(key, "OPS")
    third = standin.move(second, "SEC")
    result = tracker.statuses([key])
    assert (second, third) == ("OPS-1", "SEC-1") and result[key].key == third and result[key].status == "open"
    assert tracker.client.issue(key).key == third  # GET of the first key lands on the issue too


# --------------------------------------------------------------------------- per-service settings

PAY_OWNER = Person(key="pat", name="Pat", email="pat@example.com", handles={"jira": "acc-pat"})


@pytest.fixture
def two_projects() -> Iterator[JiraStandin]:
    with validated(JiraStandin, JIRA_SPEC, project="CL", projects={"PAY": "Payments"},
                   components={"PAY": ["checkout-api", "web"]},
                   custom_fields={"customfield_10010": "Incident", "customfield_10020": "Team"},
                   users={BOB.handles["jira"]: "Bob", "acc-pat": "Pat"}) as server:
        yield server


def per_service_tracker(server: JiraStandin) -> JiraTracker:
    return JiraTracker(JiraConfig(
        url=server.url, project="CL", timeout=1.0, custom_fields={"customfield_10020": "sre"},
        services={"checkout": {"project": "PAY", "issue_type": "Bug", "components": ["checkout-api"],
                               "custom_fields": {"customfield_10010": "{incident} ({severity}, {service})",
                                                 "customfield_10020": {"value": "payments-{priority}"}},
                               "wont_do_resolutions": ["Duplicate"], "labels": ["payments"]},
                  "search": {"issue_type": None}},  # an unset override inherits
    ), people={"bob": BOB, "pat": PAY_OWNER})


def test_service_overrides_reach_the_created_issue(two_projects: JiraStandin) -> None:
    tracker = per_service_tracker(two_projects)
    context = {"incident": "api/INC-42", "severity": "SEV2", "service": "checkout", "priority": "P1"}
    pay = tracker.ensure_ticket(request().model_copy(update={"service": "checkout", "context": context,
                                                             "assignee": PAY_OWNER}))
    other = tracker.ensure_ticket(request(marker="m-2").model_copy(update={"service": "search"}))
    plain = tracker.ensure_ticket(request(marker="m-3"))
    assert (pay.key, other.key, plain.key) == ("PAY-1", "CL-1", "CL-2")
    issue = two_projects.issues["PAY-1"]
    assert issue["project"] == "PAY" and issue["issuetype"] == "Bug"
    assert issue["components"] == ["checkout-api"]
    assert issue["custom"] == {"customfield_10010": "api/INC-42 (SEV2, checkout)",
                               "customfield_10020": {"value": "payments-P1"}}
    assert issue["assignee"] == "acc-pat"
    assert issue["labels"][0] == "payments" and "closeloop" not in issue["labels"]
    default = two_projects.issues["CL-1"]
    assert default["issuetype"] == "Task" and default["components"] == []
    assert default["custom"] == {"customfield_10020": "sre"} and default["assignee"] == BOB.handles["jira"]
    # found again across projects by the marker label: no second issue
    again = tracker.ensure_ticket(request().model_copy(update={"service": "checkout", "context": context}))
    assert again.key == "PAY-1" and len(two_projects.issues) == 3
    # the project's own won't-do resolutions and transitions apply to its issues
    assert tracker.close("PAY-1", wont_do=True).status == "wont_do"
    assert two_projects.issues["PAY-1"]["resolution"] == "Duplicate"
    assert tracker.close("CL-1", wont_do=True).status == "wont_do"
    assert two_projects.issues["CL-1"]["resolution"] == "Won't Do"
    assert tracker.reopen("CL-1").status == "open" and tracker.reopen("CL-1").status == "open"
    assert tracker.close("CL-1").status == "done" and two_projects.issues["CL-1"]["resolution"] == "Done"


def test_unknown_component_or_field_is_a_clear_non_retryable_error(two_projects: JiraStandin) -> None:
    tracker = JiraTracker(JiraConfig(url=two_projects.url, project="PAY", components=["nope"], timeout=1.0))
    with pytest.raises(IntegrationError) as bad:
        tracker.create(request())
    assert not bad.value.retryable and "Component name 'nope' is not valid" in str(bad.value)
    tracker = JiraTracker(JiraConfig(url=two_projects.url, project="CL", custom_fields={"customfield_1": "x"},
                                     timeout=1.0))
    with pytest.raises(IntegrationError) as unknown:
        tracker.create(request())
    assert not unknown.value.retryable and "customfield_1" in str(unknown.value)
    tracker = JiraTracker(JiraConfig(url=two_projects.url, project="CL", custom_fields={"customfield_10010": "{nope}"},
                                     timeout=1.0))
    with pytest.raises(IntegrationError) as template:
        tracker.create(request())
    assert not template.value.retryable and "nope" in str(template.value)
    assert two_projects.issues == {}


@pytest.mark.parametrize(("key", "sent"), [("x?admin=1#", "x%3Fadmin%3D1%23"), ("CL-1/../CL-2", "CL-1%2F..%2FCL-2"),
                                           ("..", None), (".", None)])
def test_an_issue_key_is_one_path_segment(tracker: JiraTracker, standin: JiraStandin, key: str,
                                          sent: str | None) -> None:
    """A key never reaches another resource (`/`, `..`), a query (`?`) or a fragment (`#`) of the Jira API.
    `..` cannot be one segment at all (requests sends `%2E%2E` as `..`): refused before any request."""
    first = tracker.ensure_ticket(request()).key
    before = len(standin.paths)
    with pytest.raises(IntegrationError) as refused:
        tracker.comment(key, "Closed by closeloop", "idem-1")
    assert not refused.value.retryable
    if sent is None:
        assert len(standin.paths) == before
    else:
        assert [p.split("?")[0] for p in standin.paths[before:]] == [f"GET /rest/api/2/issue/{sent}/comment"]
    assert standin.issues[first]["comments"] == []
