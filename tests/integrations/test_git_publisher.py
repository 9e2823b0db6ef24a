"""GitHubPublisher through PyGithub, over HTTP, against the GitHub REST stand-in: branches, files, commits and pull
requests in its in-memory Git model. Every JSON response the stand-in serves is checked against GitHub's own
OpenAPI description (closeloop/standins/spec.py); a test fails on any violation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from closeloop.config import ConfigError
from closeloop.integrations.base import Document, IntegrationError
from closeloop.integrations.github import GitHubPlugin
from closeloop.integrations.github.publisher import GitHubPublisher, blob_sha, branch_name, file_path
from closeloop.integrations.github.settings import ENV_TOKEN, GitHubPublisherSettings
from closeloop.integrations.plugin import PluginContext
from closeloop.secrets import Secrets
from closeloop.standins.github import GitHubStandin, valid_branch_name
from tests.standins.fixtures import GITHUB_SPEC, validated

REPO = "acme/postmortems"
PM = "postmortem/pagerduty/P123"
BRANCH = "closeloop/postmortem_pagerduty_P123"
PATH = "postmortems/2026/postmortem_pagerduty_P123.md"
TOKEN = "ghp_s3cretTOKENvalue"
MARKDOWN = "# Postmortem: Checkout down\n\nCaf\u00e9 \u2014 the cache expired.\n"
PULLS = "POST /repos/{owner}/{repo}/pulls"
REFS = "POST /repos/{owner}/{repo}/git/refs"
PUT = "PUT /repos/{owner}/{repo}/contents/{path}"


def document(markdown: str = MARKDOWN, postmortem_id: str = PM) -> Document:
    return Document(postmortem_id=postmortem_id, title="Postmortem: Checkout down", markdown=markdown,
                    html="<h1>x</h1>", started_at=datetime(2026, 3, 4, 5, 6, tzinfo=UTC))


@pytest.fixture
def standin() -> Iterator[GitHubStandin]:
    with validated(GitHubStandin, GITHUB_SPEC, must_serve=True, token=TOKEN) as server:
        server.add_repo(REPO, collaborators=["alice-gh", "bob-gh"])
        server.add_file(REPO, "README.md", "# Postmortems\n")
        yield server


def publisher(standin: GitHubStandin, token: str = TOKEN, **kw: object) -> GitHubPublisher:
    settings = GitHubPublisherSettings.model_validate({"repo": REPO, "base_url": standin.base_url, "timeout": 2.0,
                                                       **kw})
    return GitHubPublisher(settings, token=token)


def pulls(standin: GitHubStandin) -> list[dict[str, object]]:
    return list(standin.repos[REPO]["pulls"].values())


def commits_with(standin: GitHubStandin, branch: str, path: str, content: bytes) -> int:
    """How many commits on `branch` wrote `content` at `path`."""
    repo = standin.repos[REPO]
    return sum(1 for c in standin.branch_commits(REPO, branch) if repo["trees"][c["sha"]].get(path) == blob_sha(content)
               and repo["trees"].get(c["parent"], {}).get(path) != blob_sha(content))


def test_names_are_valid_git_branches_and_paths_follow_the_template() -> None:
    assert branch_name(PM) == BRANCH
    for odd in ("postmortem/api/a..b", "postmortem/api/x.lock", "postmortem/api/" + "y" * 200, "postmortem/api/_.~"):
        assert valid_branch_name(branch_name(odd)), branch_name(odd)
    assert branch_name("postmortem/api/a.b") != branch_name("postmortem/api/a%2Eb")
    assert file_path("postmortems/{year}/{stem}.md", document()) == PATH
    assert file_path("{source}/{year}-{month}/{stem}.md", document()) == \
        "pagerduty/2026-03/postmortem_pagerduty_P123.md"
    undated = Document(postmortem_id=PM, title="t", markdown="m", html="h")
    assert file_path("{year}/{stem}.md", undated, now=datetime(2027, 1, 2, tzinfo=UTC)) == \
        "2027/postmortem_pagerduty_P123.md"


def test_first_publish_opens_one_pull_request_with_the_file_on_its_branch(standin: GitHubStandin) -> None:
    url = publisher(standin).publish(document(), f"{PM}/publish")

    [pull] = pulls(standin)
    assert url == f"{standin.url}/{REPO}/pull/{pull['number']}"
    assert (pull["head"], pull["base"], pull["title"]) == (BRANCH, "main", "Postmortem: Checkout down")
    assert standin.files(REPO, BRANCH)[PATH] == MARKDOWN.encode("utf-8")  # byte for byte
    assert PATH not in standin.files(REPO)  # not on main until merged
    assert commits_with(standin, BRANCH, PATH, MARKDOWN.encode()) == 1
    assert len(standin.branch_commits(REPO, BRANCH)) == 1
    assert set(standin.repos[REPO]["branches"]) == {"main", BRANCH}
    assert standin.requests[PULLS] == standin.requests[REFS] == standin.requests[PUT] == 1


def test_republish_of_a_revision_commits_to_the_same_branch_and_pull_request(standin: GitHubStandin) -> None:
    pub = publisher(standin)
    first = pub.publish(document(), f"{PM}/publish")
    revised = MARKDOWN + "\n## Action items\n\n- Alert on cache expiry\n"
    second = pub.publish(document(revised), f"{PM}/publish")

    assert second == first and len(pulls(standin)) == 1
    assert standin.files(REPO, BRANCH)[PATH] == revised.encode()
    assert len(standin.branch_commits(REPO, BRANCH)) == 2
    assert standin.requests[PULLS] == standin.requests[REFS] == 1

    assert pub.publish(document(revised), f"{PM}/publish") == first  # the same document again: nothing new
    assert len(standin.branch_commits(REPO, BRANCH)) == 2 and standin.requests[PUT] == 2
    assert len(pulls(standin)) == 1


@pytest.mark.parametrize("lost", [REFS, PUT, PULLS])
def test_a_lost_create_answer_then_the_retry_makes_nothing_twice(standin: GitHubStandin, lost: str) -> None:
    pub = publisher(standin)
    standin.lose_next_create_response(path=lost)
    with pytest.raises(IntegrationError) as err:
        pub.publish(document(), f"{PM}/publish")
    assert err.value.retryable  # the connection dropped: the activity retries

    url = pub.publish(document(), f"{PM}/publish")  # the activity's retry

    [pull] = pulls(standin)
    assert url.endswith(f"/pull/{pull['number']}")
    assert set(standin.repos[REPO]["branches"]) == {"main", BRANCH}
    assert len(standin.branch_commits(REPO, BRANCH)) == 1  # no duplicate commit
    assert commits_with(standin, BRANCH, PATH, MARKDOWN.encode()) == 1
    assert standin.requests[lost] == 1  # made once, found again by the retry
    assert standin.requests[PULLS] == standin.requests[REFS] == standin.requests[PUT] == 1


def test_labels_and_reviewers_are_set_once_even_after_a_lost_pull_request_answer(standin: GitHubStandin) -> None:
    pub = publisher(standin, labels=["postmortem"], reviewers=["alice-gh", "bob-gh"])
    standin.lose_next_create_response(path=PULLS)
    with pytest.raises(IntegrationError):
        pub.publish(document(), "k")
    pub.publish(document(), "k")  # found by its head: labelled and reviewers asked now
    [pull] = pulls(standin)
    assert pull["labels"] == ["postmortem"] and pull["reviewers"] == ["alice-gh", "bob-gh"]

    standin.add_review(REPO, int(str(pull["number"])), "alice-gh")  # alice reviewed: not asked again
    pub.publish(document(MARKDOWN + "more\n"), "k")
    assert pull["reviewers"] == ["bob-gh"] and pull["labels"] == ["postmortem"]
    assert standin.requests["POST /repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers"] == 1
    assert standin.requests["POST /repos/{owner}/{repo}/issues/{issue_number}/labels"] == 1


def test_a_reviewer_github_refuses_is_logged_and_the_document_still_published(standin: GitHubStandin) -> None:
    with capture_logs() as logs:
        url = publisher(standin, reviewers=["stranger"]).publish(document(), "k")
    assert "/pull/" in url and len(pulls(standin)) == 1
    assert any(e["event"] == "github publish reviewers refused" for e in logs)


def test_after_the_merge_an_unchanged_document_changes_nothing_and_a_revision_opens_a_new_pull_request(
        standin: GitHubStandin) -> None:
    pub = publisher(standin)
    pub.publish(document(), "k")
    [pull] = pulls(standin)
    standin.add_file(REPO, PATH, MARKDOWN, message="Merge pull request")  # merged (squash), branch deleted
    pull["closed_at"] = pull["merged_at"] = pull["created"]
    del standin.repos[REPO]["branches"][BRANCH]

    url = pub.publish(document(), "k")
    assert url == f"{standin.url}/{REPO}/blob/main/{PATH}"
    assert BRANCH not in standin.repos[REPO]["branches"] and len(pulls(standin)) == 1

    url = pub.publish(document(MARKDOWN + "Revised.\n"), "k")
    assert len(pulls(standin)) == 2 and url.endswith(f"/pull/{pulls(standin)[1]['number']}")
    assert standin.files(REPO, BRANCH)[PATH] == (MARKDOWN + "Revised.\n").encode()


def test_direct_mode_commits_to_the_base_branch_once(standin: GitHubStandin) -> None:
    pub = publisher(standin, mode="direct")
    url = pub.publish(document(), "k")
    assert url == f"{standin.url}/{REPO}/blob/main/{PATH}"
    assert standin.files(REPO)[PATH] == MARKDOWN.encode()
    assert pub.publish(document(), "k") == url  # again: no new commit
    standin.lose_next_create_response(path=PUT)
    with pytest.raises(IntegrationError):
        pub.publish(document("# revised\n"), "k")
    pub.publish(document("# revised\n"), "k")
    assert standin.files(REPO)[PATH] == b"# revised\n"
    assert [c["message"] for c in standin.branch_commits(REPO, "main")][1:] == \
        ["Postmortem: Checkout down (pagerduty/P123)"] * 2
    assert pulls(standin) == [] and set(standin.repos[REPO]["branches"]) == {"main"}


def test_a_configured_base_branch_and_a_file_changed_meanwhile(standin: GitHubStandin) -> None:
    standin.repos[REPO]["branches"]["docs"] = standin.repos[REPO]["branches"]["main"]
    pub = publisher(standin, base_branch="docs", mode="direct")
    pub.publish(document(), "k")
    standin.add_file(REPO, PATH, "edited by a person\n", branch="docs")
    standin.fail_next(1, status=409, path=PUT)  # the sha went stale between reading and writing
    pub.publish(document("# v2\n"), "k")
    assert standin.files(REPO, "docs")[PATH] == b"# v2\n" and standin.requests[PUT] == 3
    with pytest.raises(IntegrationError, match="no branch 'nope'") as err:
        publisher(standin, base_branch="nope").publish(document(), "k")
    assert not err.value.retryable


def test_an_unknown_repository_is_a_clear_error_no_retry_fixes(standin: GitHubStandin) -> None:
    with pytest.raises(IntegrationError) as err:
        publisher(standin, repo="acme/nope").publish(document(), "k")
    assert not err.value.retryable and err.value.status == 404  # type: ignore[attr-defined]
    assert "acme/nope" in str(err.value) and ENV_TOKEN in str(err.value)


def test_a_bad_token_is_not_retryable_and_never_shown(standin: GitHubStandin) -> None:
    bad = "ghp_wrongTOKEN"
    with capture_logs() as logs:
        with pytest.raises(IntegrationError) as err:
            publisher(standin, token=bad).publish(document(), "k")
    assert not err.value.retryable and err.value.status == 401  # type: ignore[attr-defined]
    assert "Bad credentials" in str(err.value) and ENV_TOKEN in str(err.value)
    assert bad not in str(err.value) and bad not in repr(logs) and TOKEN not in str(err.value)
    assert bad not in repr(publisher(standin, token=bad))
    standin.fail_next(1, status=403, path=REFS)  # a read-only token
    with pytest.raises(IntegrationError) as denied:
        publisher(standin).publish(document(), "k")
    assert not denied.value.retryable and "write access" in str(denied.value)
    assert standin.repos[REPO]["branches"].keys() == {"main"} and pulls(standin) == []


def test_server_errors_and_rate_limits_are_retryable(standin: GitHubStandin) -> None:
    pub = publisher(standin)
    standin.fail_next(1, status=502, path=PUT)
    with pytest.raises(IntegrationError) as err:
        pub.publish(document(), "k")
    assert err.value.retryable
    standin.rate_limit_next(retry_after=30, path=PULLS)
    with pytest.raises(IntegrationError) as rate:
        pub.publish(document(), "k")
    assert rate.value.retryable and 0 < rate.value.retry_after <= 30  # type: ignore[attr-defined]
    pub.publish(document(), "k")
    assert len(pulls(standin)) == 1 and len(standin.branch_commits(REPO, BRANCH)) == 1


def test_the_plugin_builds_it_with_the_trackers_token_and_needs_one(standin: GitHubStandin) -> None:
    from closeloop.config import Config

    config = Config()
    config.plugin_settings[("publishers", "github")] = GitHubPublisherSettings(repo=REPO, base_url=standin.base_url)
    ctx = PluginContext(config=config, directory=config.people_directory(), secrets=Secrets({}))
    with pytest.raises(ConfigError, match=ENV_TOKEN):
        GitHubPlugin().publishers(ctx)
    ctx.secrets = Secrets({ENV_TOKEN: TOKEN})
    [pub] = GitHubPlugin().publishers(ctx)
    assert pub.name == "github" and "/pull/" in pub.publish(document(), "k")


CONFIG = """
data_dir = "{data}"

[publishers.github]
repo = "acme/postmortems"
base_branch = "main"
path = "docs/postmortems/{{year}}/{{stem}}.md"
reviewers = ["alice-gh"]
labels = ["postmortem"]
"""


def test_the_section_is_parsed_and_validated_by_the_registry(tmp_path: Path) -> None:
    from closeloop.integrations.registry import load

    path = tmp_path / "closeloop.toml"
    path.write_text(CONFIG.format(data=tmp_path / "data"))
    settings = load(path, env={}).plugin_settings[("publishers", "github")]
    assert isinstance(settings, GitHubPublisherSettings)
    assert (settings.mode, settings.base_url, settings.path) == ("pull_request", "https://api.github.com",
                                                                 "docs/postmortems/{year}/{stem}.md")


@pytest.mark.parametrize(("change", "message"), [
    (('repo = "acme/postmortems"', 'repo = "https://github.com/acme/postmortems"'),
     "publishers.github.repo: 'https://github.com/acme/postmortems' is not a repository name like owner/name"),
    (('repo = "acme/postmortems"', ""), "publishers.github.repo: Field required"),
    (("{{stem}}.md", "index.md"), "publishers.github.path: 'docs/postmortems/{year}/index.md' must contain {stem}"),
    (("{{year}}", "{{team}}"), "publishers.github.path: unknown field {team}"),
    (('path = "docs', 'path = "/docs'), "must be a relative path"),
    (('base_branch = "main"', 'mode = "direct"'), "reviewers and labels belong to pull requests"),
    (('base_branch = "main"', 'mode = "merge"'), "publishers.github.mode"),
    (('base_branch = "main"', 'api_url = "https://ghe.example.com"'), "publishers.github.api_url"),
])
def test_bad_settings_are_one_line_naming_the_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    from closeloop.integrations.registry import load

    path = tmp_path / "closeloop.toml"
    path.write_text(CONFIG.replace(*change).format(data=tmp_path / "data"))
    with pytest.raises(ConfigError) as err:
        load(path, env={})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_publish_activity_publishes_the_rendered_markdown_dated_by_the_incident(standin: GitHubStandin,
                                                                                    tmp_path: Path) -> None:
    from closeloop.activities.documents import DocumentActivities
    from closeloop.models import Incident, Plan, PostmortemState, Stage
    from closeloop.policy import Policy
    from closeloop.rendering import render_document

    incident = Incident(source="pagerduty", external_id="P9", title="Search slow",
                        started_at=datetime(2025, 12, 31, 23, 30, tzinfo=UTC))
    plan = Plan(postmortem_id=incident.workflow_id, incident=incident, policy=Policy(), owner="alice", reviewers=[],
                attendees=["alice"], people=["alice"])
    state = PostmortemState(plan=plan, owner="alice", stage=Stage.in_review)
    ref = DocumentActivities([publisher(standin)], tmp_path, None).publish_document(state)
    [pull] = pulls(standin)
    assert ref.endswith(f"/pull/{pull['number']}")
    files = standin.files(REPO, "closeloop/postmortem_pagerduty_P9")
    assert files["postmortems/2025/postmortem_pagerduty_P9.md"] == render_document(state).markdown.encode()
