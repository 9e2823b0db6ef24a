"""`[trackers.jira]` and `[trackers.github]`: loading, per-service overrides, the checks (one line naming the
key), and what the registry builds from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from closeloop.config import ConfigError
from closeloop.integrations.github.settings import GitHubSettings
from closeloop.integrations.github.tracker import GitHubTracker
from closeloop.integrations.jira.settings import JiraSettings
from closeloop.integrations.jira.tracker import JiraTracker
from closeloop.integrations.registry import build, load
from closeloop.planning import policy_for

PEOPLE = """
[people.bob]
name = "Bob"
email = "bob@example.com"
handles = { jira = "acc-bob", github = "bob-gh" }
"""

TRACKERS = """
[services.checkout.policy]
tracker = "github"

[services.search.policy]
tracker = "jira"

[trackers.jira]
url = "https://acme.atlassian.net"
project = "OPS"
components = ["backend"]
custom_fields = { customfield_10010 = "{incident} / {severity}" }

[trackers.jira.services.checkout]
project = "PAY"
issue_type = "Bug"
components = ["checkout-api", "web"]
custom_fields = { customfield_10020 = { value = "{service}" } }
wont_do_resolutions = ["Won't Do"]

[trackers.github]
repo = "acme/ops"
labels = ["postmortem"]
milestone = "Postmortem follow-ups"
content_per_minute = 40

[trackers.github.services.checkout]
repo = "acme/checkout"
milestone = 3

[trackers.github.services.api]
repo = "acme/api"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "closeloop.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\ndefault_owner = "bob"\n' + PEOPLE + text)
    return path


def test_tracker_sections_load_with_per_service_overrides(tmp_path: Path) -> None:
    config = load(write(tmp_path, TRACKERS), env={})
    jira, github = config.plugin_settings[("trackers", "jira")], config.plugin_settings[("trackers", "github")]
    assert isinstance(jira, JiraSettings) and isinstance(github, GitHubSettings)
    assert jira.services["checkout"].project == "PAY" and jira.services["checkout"].issue_type == "Bug"
    assert jira.services["checkout"].priorities is None  # unset: inherits [trackers.jira]
    assert github.base_url == "https://api.github.com" and github.content_per_minute == 40
    assert github.services["checkout"].milestone == 3 and github.milestone == "Postmortem follow-ups"
    assert policy_for(config, "SEV2", "checkout").tracker == "github"


def test_registry_builds_both_trackers_with_secrets_from_the_environment(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOSELOOP_GITHUB_TOKEN", "ghp-secret")
    monkeypatch.setenv("CLOSELOOP_JIRA_EMAIL", "bot@example.com")
    monkeypatch.setenv("CLOSELOOP_JIRA_API_TOKEN", "jira-secret")
    integrations = build(load(write(tmp_path, TRACKERS), env={}))
    try:
        github, jira = integrations.tracker("github"), integrations.tracker("jira")
        assert isinstance(github, GitHubTracker) and isinstance(jira, JiraTracker)
        assert github.config.token == "ghp-secret" and github.store is integrations.store
        assert "ghp-secret" not in repr(github.config) and "jira-secret" not in repr(jira.config)
        assert github.config.content_per_minute == 40
        assert github.config.for_service("checkout").repo == "acme/checkout"
        assert github.config.for_service("checkout").milestone == 3
        assert github.config.for_service("checkout").labels == ["postmortem"]  # inherited
        assert github.config.for_service("billing").repo == "acme/ops"
        assert github.config.all_repos() == ["acme/ops", "acme/checkout", "acme/api"]
        assert github.people["bob"].handles["github"] == "bob-gh"
        assert (jira.config.email, jira.config.api_token) == ("bot@example.com", "jira-secret")
        pay = jira.config.for_service("checkout")
        assert (pay.project, pay.issue_type, pay.components) == ("PAY", "Bug", ["checkout-api", "web"])
        assert pay.custom_fields == {"customfield_10020": {"value": "{service}"}}
        assert pay.priorities == jira.config.priorities and pay.labels == ["closeloop"]
        assert jira.config.for_key("PAY-12").wont_do_resolutions == ["Won't Do"]
        assert jira.config.for_key("OPS-3").project == "OPS"
        assert jira.people["bob"].handles["jira"] == "acc-bob"
    finally:
        integrations.store.close()


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t + '\n[trackers.gitlab]\nrepo = "acme/ops"\n',
     "trackers.gitlab: no integration has [trackers.gitlab] settings (known: github, jira)"),
    (lambda t: t.replace('repo = "acme/ops"\n', ""), "trackers.github.repo: Field required"),
    (lambda t: t.split("[trackers.github]")[0],
     "policy for severity SEV3, service checkout: tracker 'github' has no [trackers.github] section"),
    (lambda t: t.replace('repo = "acme/api"', 'repo = "acme-api"'),
     "trackers.github.services.api.repo: 'acme-api' is not a repository name like owner/name"),
    (lambda t: t.replace('repo = "acme/ops"', 'repo = "https://github.com/acme/ops"'),
     "trackers.github.repo: 'https://github.com/acme/ops' is not a repository name like owner/name"),
    (lambda t: t.replace('{ value = "{service}" }', '"{team}"'),
     "trackers.jira.services.checkout.custom_fields.customfield_10020: unknown template field {team}"),
    (lambda t: t.replace("content_per_minute = 40", "content_per_minute = 0"),
     "trackers.github.content_per_minute"),
    (lambda t: t.replace('issue_type = "Bug"', 'issue_typ = "Bug"'),
     "trackers.jira.services.checkout.issue_typ"),
])
def test_tracker_problems_are_one_line_naming_the_key(tmp_path: Path, change: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, change(TRACKERS)), env={})  # type: ignore[operator]
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_example_config_still_loads() -> None:
    config = load(Path(__file__).resolve().parents[2] / "closeloop" / "examples" / "closeloop.toml", env={})
    assert config.trackers == {} and ("trackers", "jira") not in config.plugin_settings
