"""GitHubTracker through PyGithub, over HTTP, against the GitHub REST stand-in.

Every JSON response the stand-in serves is checked against GitHub's own OpenAPI description
(closeloop/standins/spec.py, with the nullable-enum quirk); a test fails on any violation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from github import Auth, Github, GithubException
from prometheus_client import REGISTRY, generate_latest

from closeloop.integrations.base import IntegrationError, TicketRequest
from closeloop.integrations.github.tracker import GitHubConfig, GitHubTracker, comment_tag, marker_tag
from closeloop.models import Person
from closeloop.standins.github import GitHubStandin
from closeloop.standins.spec import ResponseValidator
from closeloop.store.store import Store
from tests.metrics_text import series, value
from tests.standins.fixtures import GITHUB_SPEC, FakeClock, spec_validator, validated

REPO = "acme/checkout"
BOB = Person(key="bob", name="Bob", email="bob@example.com", handles={"github": "bob-gh"})
MARKER = "closeloop:postmortem/api/INC-42/item-1"
BACKLINK = "https://closeloop.example.com/postmortems/api/INC-42"


@pytest.fixture(scope="module")
def validator() -> ResponseValidator:
    return spec_validator(GITHUB_SPEC)


@pytest.fixture
def standin() -> Iterator[GitHubStandin]:
    with validated(GitHubStandin, GITHUB_SPEC) as server:
        server.add_repo(REPO, collaborators=["bob-gh"], milestones={3: "Postmortem follow-ups"})
        yield server


@pytest.fixture
def tracker(standin: GitHubStandin) -> GitHubTracker:
    return GitHubTracker(GitHubConfig(repo=REPO, token="t", base_url=standin.base_url, labels=["postmortem"],
                                      milestone=3, timeout=1.0), people={"bob": BOB})


def request(marker: str = MARKER, title: str = "Validate config before push") -> TicketRequest:
    return TicketRequest(marker=marker, title=title, body=f"From the postmortem of INC-42: {BACKLINK}",
                         assignee=BOB, priority="P1", due_at=datetime(2026, 12, 1, 17, tzinfo=UTC),
                         labels=["service:checkout"])


def issues(standin: GitHubStandin) -> dict[int, dict]:
    return standin.repos[REPO]["issues"]


def test_ensure_ticket_creates_the_issue_with_the_right_fields(tracker: GitHubTracker, standin: GitHubStandin) -> None:
    ticket = tracker.ensure_ticket(request())
    assert ticket.key == f"{REPO}#1" and ticket.status == "open"
    assert ticket.url == f"{standin.url}/{REPO}/issues/1"
    issue = issues(standin)[1]
    assert issue["title"] == "Validate config before push"
    assert issue["assignees"] == ["bob-gh"]
    assert issue["labels"] == ["closeloop", "postmortem", "service:checkout"]
    assert issue["milestone"] == 3
    assert BACKLINK in issue["body"]
    assert issue["body"].rstrip().endswith(marker_tag(MARKER))
    assert marker_tag(MARKER) == f"<!-- closeloop-marker: {MARKER} -->"
    assert standin.requests["GET /repos/{owner}/{repo}"] == 1
    assert standin.requests["GET /search/issues"] == 1


def test_ensure_ticket_again_returns_the_same_issue(tracker: GitHubTracker, standin: GitHubStandin) -> None:
    first = tracker.ensure_ticket(request())
    again = tracker.ensure_ticket(request())
    assert again.key == first.key
    assert len(issues(standin)) == 1
    assert standin.requests["POST /repos/{owner}/{repo}/issues"] == 1
    other = tracker.ensure_ticket(request(marker=MARKER.replace("item-1", "item-10"), title="Alert on 5xx"))
    assert other.key != first.key and len(issues(standin)) == 2
    # "…item-1" is a prefix of "…item-10": the exact tag decides, not the loose search phrase
    assert tracker.find_by_marker(MARKER).key == first.key  # type: ignore[union-attr]


def test_lost_create_response_then_retry_finds_the_issue(tracker: GitHubTracker, standin: GitHubStandin) -> None:
    standin.lose_next_create_response()
    with pytest.raises(IntegrationError) as lost:
        tracker.ensure_ticket(request())
    assert lost.value.retryable
    assert len(issues(standin)) == 1  # created, though the answer never came
    ticket = tracker.ensure_ticket(request())  # the activity's retry
    assert ticket.key == f"{REPO}#1"
    assert len(issues(standin)) == 1
    assert standin.requests["POST /repos/{owner}/{repo}/issues"] == 1


def test_search_index_lag_falls_back_to_the_newest_labelled_issues(tracker: GitHubTracker,
                                                                   standin: GitHubStandin) -> None:
    first = tracker.create(request())
    standin.fail_next(1, status=422, path="/search/issues")  # search refused: scan the label instead
    assert tracker.find_by_marker(MARKER).key == first.key  # type: ignore[union-attr]
    assert tracker.find_by_marker("no-such-marker") is None


def test_statuses_of_150_issues_are_few_list_calls(tracker: GitHubTracker, standin: GitHubStandin) -> None:
    keys = [tracker.create(request(marker=f"m-{i}", title=f"item {i}")).key for i in range(150)]
    standin.set_state(REPO, 1, "closed", "completed")
    standin.set_state(REPO, 2, "closed", "not_planned")
    standin.set_state(REPO, 3, "closed", "completed")
    standin.set_state(REPO, 3, "open")  # reopened
    before = dict(standin.requests)

    result = tracker.statuses([*keys, f"{REPO}#999"])

    assert standin.requests["GET /repos/{owner}/{repo}/issues"] - before.get("GET /repos/{owner}/{repo}/issues", 0) \
        == math.ceil(150 / 100)
    assert standin.requests["GET /repos/{owner}/{repo}/issues/{issue_number}"] == \
        before.get("GET /repos/{owner}/{repo}/issues/{issue_number}", 0)  # no one-by-one GETs
    assert len(result) == 151
    assert result[keys[0]].status == "done" and result[keys[0]].resolution == "completed"
    assert result[keys[1]].status == "wont_do" and result[keys[1]].resolution == "not_planned"
    assert result[keys[2]].status == "open" and issues(standin)[3]["state_reason"] == "reopened"
    assert all(result[k].status == "open" for k in keys[3:])
    assert result[f"{REPO}#999"].status == "deleted"


def test_closing_through_the_api(tracker: GitHubTracker, standin: GitHubStandin) -> None:
    done = tracker.ensure_ticket(request()).key
    dropped = tracker.ensure_ticket(request(marker="m-2")).key
    assert tracker.close(done).status == "done"
    assert tracker.close(dropped, "not_planned").status == "wont_do"
    assert tracker.close(done).status == "done"
    assert standin.requests["PATCH /repos/{owner}/{repo}/issues/{issue_number}"] == 2
    states = tracker.statuses([done, dropped])
    assert (states[done].status, states[dropped].status) == ("done", "wont_do")


def test_primary_rate_limit_is_retryable_with_retry_after(tracker: GitHubTracker, standin: GitHubStandin) -> None:
    tracker.repo()
    standin.rate_limit_next(retry_after=30, status=403)
    with pytest.raises(IntegrationError) as err:
        tracker.ensure_ticket(request())
    assert err.value.retryable
    assert err.value.status == 403  # type: ignore[attr-defined]
    assert 25 <= err.value.retry_after <= 31  # type: ignore[attr-defined]  # from x-ratelimit-reset
    assert issues(standin) == {}
    assert tracker.ensure_ticket(request()).key == f"{REPO}#1"


def test_secondary_rate_limit_and_429_carry_retry_after(tracker: GitHubTracker, standin: GitHubStandin) -> None:
    tracker.repo()
    for status in (403, 429):
        standin.rate_limit_next(retry_after=7, status=status, secondary=True)
        with pytest.raises(IntegrationError) as err:
            tracker.statuses([f"{REPO}#1"])
        assert err.value.retryable and err.value.retry_after == 7  # type: ignore[attr-defined]


def test_the_metrics_count_operations_and_rate_limits(tracker: GitHubTracker, standin: GitHubStandin) -> None:
    """closeloop_tracker_calls_total{tracker="github"} counts the API operations (PyGithub has no response hook:
    an operation may be more than one request, deploy/README.md says so) and
    closeloop_tracker_rate_limit_waits_total{tracker="github"} each answer that asks to wait, as a scrape shows."""
    tracker.repo()
    before = series(generate_latest(REGISTRY).decode())
    served = sum(standin.requests.values())
    standin.rate_limit_next(retry_after=7, status=429, secondary=True)
    with pytest.raises(IntegrationError):
        tracker.statuses([f"{REPO}#1"])
    standin.fail_next(1, status=500)  # not a rate limit: counted as a call only
    with pytest.raises(IntegrationError):
        tracker.statuses([f"{REPO}#1"])
    tracker.ensure_ticket(request())
    after = series(generate_latest(REGISTRY).decode())

    def grew(name: str) -> float:
        return value(after, name, tracker="github") - value(before, name, tracker="github")

    requests = sum(standin.requests.values()) - served
    assert 3 <= grew("closeloop_tracker_calls_total") <= requests
    assert grew("closeloop_tracker_rate_limit_waits_total") == 1


def test_server_error_is_retryable_and_client_errors_are_not(tracker: GitHubTracker, standin: GitHubStandin) -> None:
    tracker.repo()
    standin.fail_next(1, status=500)
    with pytest.raises(IntegrationError) as err:
        tracker.statuses([f"{REPO}#1"])
    assert err.value.retryable and err.value.status == 500  # type: ignore[attr-defined]

    nobody = Person(key="zed", name="Zed", email="zed@example.com", handles={"github": "no-such-login"})
    with pytest.raises(IntegrationError) as bad:
        tracker.create(request().model_copy(update={"assignee": nobody}))
    assert not bad.value.retryable and bad.value.status == 422  # type: ignore[attr-defined]

    with pytest.raises(IntegrationError) as missing:
        tracker.comment(f"{REPO}#404", "hello", "k-1")
    assert not missing.value.retryable and missing.value.status == 404  # type: ignore[attr-defined]

    standin.fail_next(1, status=403)  # a plain permission refusal, not a rate limit
    with pytest.raises(IntegrationError) as forbidden:
        tracker.statuses([f"{REPO}#1"])
    assert not forbidden.value.retryable


def test_timeout_is_retryable(tracker: GitHubTracker, standin: GitHubStandin) -> None:
    tracker.repo()
    standin.delay_next(2.0, path="/repos/{owner}/{repo}/issues")
    with pytest.raises(IntegrationError) as err:
        tracker.statuses([f"{REPO}#1"])
    assert err.value.retryable


def test_comment_is_idempotent(tracker: GitHubTracker, standin: GitHubStandin) -> None:
    key = tracker.ensure_ticket(request()).key
    tracker.comment(key, "Reminder: due in 3 days.", "postmortem/api/INC-42/item-1/reminder-1")
    tracker.comment(key, "Reminder: due in 3 days.", "postmortem/api/INC-42/item-1/reminder-1")
    tracker.comment(key, "Reminder: due tomorrow.", "postmortem/api/INC-42/item-1/reminder-2")
    bodies = [c["body"] for c in issues(standin)[1]["comments"]]
    assert len(bodies) == 2
    assert bodies[0].startswith("Reminder: due in 3 days.") and bodies[1].startswith("Reminder: due tomorrow.")
    assert bodies[0].endswith(comment_tag("postmortem/api/INC-42/item-1/reminder-1"))
    assert standin.requests["POST /repos/{owner}/{repo}/issues/{issue_number}/comments"] == 2


def test_pygithub_pages_follow_the_standin_links(standin: GitHubStandin) -> None:
    """Raw PyGithub against the stand-in: Link paging, since and labels filters, search totals."""
    gh = Github(base_url=standin.base_url, auth=Auth.Token("t"), retry=None, per_page=2,
                seconds_between_requests=None, seconds_between_writes=None)
    repo = gh.get_repo(REPO)
    for n in range(5):
        repo.create_issue(title=f"t{n}", body=f"body {n}", labels=["closeloop"] if n % 2 == 0 else [])
    assert [i.number for i in repo.get_issues(state="all")] == [5, 4, 3, 2, 1]
    assert standin.requests["GET /repos/{owner}/{repo}/issues"] == 3
    assert [i.number for i in repo.get_issues(state="all", labels=["closeloop"])] == [5, 3, 1]
    later = datetime.fromtimestamp(time.time() + 60, UTC)
    assert list(repo.get_issues(state="all", since=later)) == []
    found = gh.search_issues(f'repo:{REPO} is:issue in:body "body 3"')
    assert found.totalCount == 1 and [i.number for i in found] == [4]
    issue = repo.get_issue(2)
    issue.edit(state="closed", state_reason="not_planned")
    assert repo.get_issue(2).state_reason == "not_planned"
    issue.create_comment("hi")
    assert [c.body for c in issue.get_comments()] == ["hi"]


def test_validator_allows_null_in_nullable_enums_and_catches_wrong_bodies(validator: ResponseValidator) -> None:
    path = f"/repos/{REPO}/issues/1"
    assert not [e for e in validator.errors("GET", path, 200, {"state_reason": None}) if "state_reason" in e]
    assert [e for e in validator.errors("GET", path, 200, {"state_reason": "bogus"}) if "state_reason" in e]
    assert validator.errors("GET", "/search/issues", 200, {"total_count": 1, "items": "nope"})


def test_statuses_of_a_deleted_issue_and_the_request_count(tracker: GitHubTracker, standin: GitHubStandin) -> None:
    keys = [tracker.create(request(marker=f"m-{i}", title=f"item {i}")).key for i in range(3)]
    standin.delete_issue(REPO, 2)
    standin.set_state(REPO, 3, "closed", "not_planned")
    before, listed = tracker.request_count, standin.requests["GET /repos/{owner}/{repo}/issues"]

    result = tracker.statuses(keys)

    assert [result[k].status for k in keys] == ["open", "deleted", "wont_do"]
    assert standin.requests["GET /repos/{owner}/{repo}/issues"] - listed == 1
    assert tracker.request_count - before == 1  # the repository was looked up when creating
    # GitHub answers a deleted issue with 410 Gone (the stand-in too), and a new issue never reuses its number
    with pytest.raises(GithubException) as gone:
        tracker.repo().get_issue(2)
    assert gone.value.status == 410
    assert tracker.create(request(marker="m-new")).key == f"{REPO}#4"


# --------------------------------------------------------------------------- per service, milestones, pacing

API_REPO = "acme/api"


def routed(standin: GitHubStandin, **kw: object) -> GitHubTracker:
    standin.add_repo(API_REPO, collaborators=["bob-gh"], milestones={1: "Q3", 7: "Postmortem follow-ups"})
    config = GitHubConfig(repo=REPO, token="t", base_url=standin.base_url, labels=["postmortem"],
                          milestone="Postmortem follow-ups", timeout=1.0,
                          services={"api": {"repo": API_REPO, "labels": ["api", "postmortem"]},
                                    "search": {"repo": None}})
    return GitHubTracker(config, people={"bob": BOB}, **kw)  # type: ignore[arg-type]


def test_each_service_opens_issues_in_its_repository_with_the_milestone_by_title(standin: GitHubStandin) -> None:
    tracker = routed(standin)
    api = tracker.ensure_ticket(request().model_copy(update={"service": "api"}))
    api2 = tracker.ensure_ticket(request(marker="m-2").model_copy(update={"service": "api"}))
    default = tracker.ensure_ticket(request(marker="m-3").model_copy(update={"service": "search"}))
    # "search" leaves its repository unset: the default one
    assert (api.key, api2.key, default.key) == (f"{API_REPO}#1", f"{API_REPO}#2", f"{REPO}#1")
    issue = standin.repos[API_REPO]["issues"][1]
    assert issue["labels"] == ["closeloop", "api", "postmortem", "service:checkout"]
    assert issue["milestone"] == 7 and issue["assignees"] == ["bob-gh"]
    assert standin.repos[REPO]["issues"][1]["milestone"] == 3  # "Postmortem follow-ups" there is number 3
    # titles are looked up once per repository, then cached
    assert standin.requests["GET /repos/{owner}/{repo}/milestones"] == 2
    # the same request again finds the issue in the service's repository; without a service, every repository
    assert tracker.ensure_ticket(request().model_copy(update={"service": "api"})).key == api.key
    assert tracker.find_by_marker(MARKER).key == api.key  # type: ignore[union-attr]
    assert len(standin.repos[API_REPO]["issues"]) == 2 and len(issues(standin)) == 1
    # an unknown milestone title opens the issue without one
    unknown = GitHubTracker(GitHubConfig(repo=REPO, token="t", base_url=standin.base_url, milestone="nope",
                                         timeout=1.0))
    assert standin.repos[REPO]["issues"][int(unknown.create(request(marker="m-4")).key.split("#")[1])][
        "milestone"] is None
    # close and reopen
    assert tracker.close(api.key, wont_do=True).status == "wont_do"
    assert tracker.reopen(api.key).status == "open" and tracker.reopen(api.key).status == "open"
    assert standin.repos[API_REPO]["issues"][1]["state_reason"] == "reopened"


def test_issue_and_comment_creation_is_paced_through_the_store(tmp_path: Path, standin: GitHubStandin) -> None:
    """Creating issues and comments takes a slot of `content_per_minute` in the store (shared by all workers);
    past the limit the call is refused with a retryable error saying how long to wait, and nothing is sent."""
    clock = FakeClock()
    store = Store(f"sqlite:///{tmp_path / 'pace.db'}")
    try:
        config = GitHubConfig(repo=REPO, token="t", base_url=standin.base_url, timeout=1.0, content_per_minute=3)
        # two workers, one store
        first, second = (GitHubTracker(config, people={"bob": BOB}, store=store, clock=clock) for _ in range(2))
        one = first.ensure_ticket(request(marker="m-1")).key
        clock.advance(10)
        second.ensure_ticket(request(marker="m-2"))
        clock.advance(10)
        first.comment(one, "Reminder", "k-1")
        with pytest.raises(IntegrationError) as paced:
            second.ensure_ticket(request(marker="m-3"))
        assert paced.value.retryable and paced.value.retry_after == pytest.approx(40)  # type: ignore[attr-defined]
        with pytest.raises(IntegrationError) as comment:
            first.comment(one, "Reminder", "k-2")
        assert comment.value.retry_after == pytest.approx(40)  # type: ignore[attr-defined]
        first.comment(one, "Reminder", "k-1")  # already there: nothing to create, nothing counted
        assert standin.requests["POST /repos/{owner}/{repo}/issues"] == 2
        assert standin.requests["POST /repos/{owner}/{repo}/issues/{issue_number}/comments"] == 1
        clock.advance(40)  # the first slot frees
        assert second.ensure_ticket(request(marker="m-3")).key == f"{REPO}#3"
        with pytest.raises(IntegrationError) as again:
            first.comment(one, "Reminder", "k-2")
        assert again.value.retry_after == pytest.approx(10)  # type: ignore[attr-defined]
    finally:
        store.close()


@pytest.mark.parametrize(("key", "sent"), [("acme?admin=1/checkout#1", "acme%3Fadmin%3D1/checkout"),
                                           ("acme/x%2F..#1", "acme/x%252F.."), ("../..#1", None)])
def test_a_repository_in_a_key_is_quoted_path_segments(tracker: GitHubTracker, standin: GitHubStandin, key: str,
                                                       sent: str | None) -> None:
    """The owner and repository of a ticket key never reach another resource (`..`) or a query (`?`)."""
    with pytest.raises(IntegrationError) as refused:
        tracker.close(key)
    assert not refused.value.retryable
    assert [p.split("?")[0] for p in standin.paths] == ([f"GET /api/v3/repos/{sent}"] if sent else [])
