"""GitHubTimelineSource through PyGithub, over HTTP, against the GitHub REST stand-in. Every JSON response
the stand-in serves is checked against GitHub's OpenAPI description; a test fails on any violation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from closeloop.integrations.base import HttpIntegrationError
from closeloop.integrations.github.timeline import GitHubTimelineConfig, GitHubTimelineSource
from closeloop.models import Incident, Person
from closeloop.standins.github import GitHubStandin
from tests.standins.fixtures import GITHUB_SPEC, validated

REPO, OTHER = "acme/checkout", "acme/payments"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
BOB = Person(key="bob", name="Bob", email="bob@example.com", handles={"github": "bob-gh"})


@pytest.fixture
def standin() -> Iterator[GitHubStandin]:
    with validated(GitHubStandin, GITHUB_SPEC) as server:
        server.add_repo(REPO)
        server.add_repo(OTHER)
        yield server


def source(standin: GitHubStandin, **kw: object) -> GitHubTimelineSource:
    settings: dict[str, object] = dict(token="t", base_url=standin.base_url, repositories=[REPO],
                                       slack_before=timedelta(hours=2), timeout=2.0)
    settings.update(kw)
    return GitHubTimelineSource(GitHubTimelineConfig(**settings), people={"bob": BOB})  # type: ignore[arg-type]


def incident(**kw: object) -> Incident:
    fields: dict[str, object] = dict(source="api", external_id="INC-9", title="Checkout returns 500s",
                                     services=["checkout"], started_at=T0, resolved_at=T0 + timedelta(hours=1))
    fields.update(kw)
    return Incident(**fields)  # type: ignore[arg-type]


def test_deployments_merged_pulls_and_commits_inside_the_window(standin: GitHubStandin) -> None:
    h = timedelta(hours=1)
    standin.add_deployment(REPO, T0 - 3 * h, sha="a" * 40, description="too early")
    standin.add_deployment(REPO, T0 - timedelta(minutes=20), sha="b" * 40, ref="v4711", creator="bob-gh",
                           description="release 4711")
    standin.add_deployment(REPO, T0 + timedelta(minutes=30), sha="c" * 40, ref="v4710", environment="production")
    standin.add_deployment(REPO, T0 + 5 * h, sha="d" * 40, description="after the resolution")
    standin.add_pull(REPO, "Old cleanup", created=T0 - 30 * h, merged_at=T0 - 20 * h)
    pr = standin.add_pull(REPO, "Cache payment tokens", created=T0 - 5 * h, merged_at=T0 - 90 * timedelta(minutes=1),
                          user="bob-gh")
    standin.add_pull(REPO, "Abandoned idea", created=T0 - 4 * h, closed_at=T0 - h)  # closed, never merged
    standin.add_pull(REPO, "Release branch", created=T0 - 4 * h, merged_at=T0 - h, base="release")
    standin.add_pull(REPO, "Still open", created=T0 - h)
    standin.add_commit(REPO, T0 - 3 * h, "ancient history")
    sha = standin.add_commit(REPO, T0 - 85 * timedelta(minutes=1), "Cache payment tokens (#2)\n\nlong body",
                             author="bob-gh")
    standin.add_commit(REPO, T0 + timedelta(minutes=25), "Revert \"Cache payment tokens\"")
    standin.add_commit(REPO, T0 + timedelta(minutes=26), "wip on a branch", branch="feature")
    events = sorted(source(standin).fetch(incident()), key=lambda e: e.at)
    assert [(e.kind, e.text) for e in events] == [
        ("change", f"PR #{pr} merged into {REPO}@main: Cache payment tokens"),
        ("commit", f"Commit {sha[:7]} to {REPO}@main: Cache payment tokens (#2)"),
        ("deploy", f"Deployment of v4711 ({'b' * 7}) to production in {REPO}: release 4711"),
        ("commit", f"Commit {events[3].text.split()[1]} to {REPO}@main: Revert \"Cache payment tokens\""),
        ("deploy", f"Deployment of v4710 ({'c' * 7}) to production in {REPO}"),
    ]
    assert events[0].actor == "bob" and events[1].actor == "bob" and events[2].actor == "bob"  # handles
    assert events[0].url == f"{standin.url}/{REPO}/pull/{pr}"
    assert events[1].at == T0 - timedelta(minutes=85)
    assert all(e.source == "github" for e in events)
    # one listing call per kind, not one per pull request
    assert standin.requests["GET /repos/{owner}/{repo}/pulls"] == 1
    assert standin.requests["GET /repos/{owner}/{repo}/deployments"] == 1
    assert standin.requests["GET /repos/{owner}/{repo}/commits"] == 1


def test_listings_are_batched_pages_and_stop_before_the_window(standin: GitHubStandin) -> None:
    m = timedelta(minutes=1)
    for i in range(40):  # merged inside the window, newest last
        standin.add_pull(REPO, f"fix {i}", created=T0 - 100 * m, merged_at=T0 + i * m)
    for i in range(60):  # merged long before: the newest-first listing stops at them
        standin.add_pull(REPO, f"old {i}", created=T0 - 40 * 24 * 60 * m, merged_at=T0 - (10 * 24 * 60 - i) * m)
    events = source(standin, page_size=15, include=["pulls"]).fetch(incident())
    assert sorted(e.text.split(": ", 1)[1] for e in events) == sorted(f"fix {i}" for i in range(40))
    assert standin.requests["GET /repos/{owner}/{repo}/pulls"] == 3  # 15 + 15 + 15 (the third reaches "old")


def test_repositories_per_service_and_commits_across_pages(standin: GitHubStandin) -> None:
    for i in range(12):
        standin.add_commit(OTHER, T0 + timedelta(minutes=i), f"payments change {i}")
    standin.add_commit(REPO, T0 + timedelta(minutes=3), "checkout change")
    per_service = source(standin, page_size=5, service_repositories={"payments": [OTHER]}, include=["commits"])
    events = per_service.fetch(incident(services=["payments"]))
    assert sorted(e.text.rsplit(": ", 1)[1] for e in events) == sorted(f"payments change {i}" for i in range(12))
    assert standin.requests["GET /repos/{owner}/{repo}/commits"] == 3
    assert [e.text.rsplit(": ", 1)[1] for e in per_service.fetch(incident())] == ["checkout change"]


def test_server_errors_are_retryable_and_auth_errors_are_not(standin: GitHubStandin) -> None:
    standin.add_commit(REPO, T0 + timedelta(minutes=3), "checkout change")
    standin.fail_next(1, status=500, path="/repos/{owner}/{repo}/commits")
    with pytest.raises(HttpIntegrationError) as down:
        source(standin).fetch(incident())
    assert down.value.retryable and down.value.status == 500
    standin.fail_next(1, status=401)
    with pytest.raises(HttpIntegrationError) as denied:
        source(standin).fetch(incident())
    assert not denied.value.retryable and denied.value.status == 401
    assert [e.kind for e in source(standin).fetch(incident())] == ["commit"]
