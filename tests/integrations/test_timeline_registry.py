"""Timeline sources in the config: `[timeline.<source>]` sections, the per-service choice, `config check`,
and what integrations.registry builds from them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from closeloop.config import ConfigError
from closeloop.integrations.github.timeline import GitHubTimelineSource
from closeloop.integrations.pagerduty.timeline import PagerDutyTimelineSource
from closeloop.integrations.registry import build, load
from closeloop.integrations.slack.timeline import SlackTimelineSource
from closeloop.planning import policy_for
from tests.temporal_env import make_config


def test_a_named_source_without_its_section_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        make_config(tmp_path, extra='\n[services.checkout.policy]\ntimeline_sources = ["incident", "pagerduty"]\n')
    assert "service checkout: timeline source 'pagerduty' has no [timeline.pagerduty] section" in str(missing.value)
    with pytest.raises(ConfigError) as unknown:
        make_config(tmp_path, extra='\n[severity.SEV1]\ntimeline_sources = ["pagrduty"]\n')
    assert "unknown timeline source 'pagrduty'" in str(unknown.value)
    with pytest.raises(ConfigError) as jira:
        make_config(tmp_path,
                    extra='\n[severity.SEV1]\ntimeline_sources = ["jira"]\n\n[timeline.jira]\nproject = "CL"\n')
    assert "needs [timeline.jira] url or a [trackers.jira] section" in str(jira.value)
    with pytest.raises(ConfigError) as bad_key:
        make_config(tmp_path, extra='\n[timeline.slack]\nchanel = "C1"\n')
    assert "timeline.slack.chanel" in str(bad_key.value)


def test_configured_sources_are_built_per_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOSELOOP_PAGERDUTY_TOKEN", "pd-secret")
    monkeypatch.setenv("CLOSELOOP_SLACK_TOKEN", "xoxb-secret")
    monkeypatch.setenv("CLOSELOOP_GITHUB_TOKEN", "gh-secret")
    config = make_config(tmp_path, extra="""
[services.checkout.policy]
timeline_sources = ["incident", "notes", "alertmanager", "pagerduty", "github", "slack"]

[timeline.pagerduty]
url = "http://127.0.0.1:9/pd"

[timeline.github]
base_url = "http://127.0.0.1:9/api/v3"
repositories = ["acme/web"]
service_repositories = { checkout = ["acme/checkout", "acme/payments"] }
slack_before = "3h"

[timeline.slack]
base_url = "http://127.0.0.1:9/api/"
service_channels = { checkout = "C0CHECKOUT" }
reactions = { fire = "detection", eyes = "acknowledge" }
""")
    plan_sources = policy_for(config, "SEV2", "checkout").timeline_sources
    assert plan_sources == ["incident", "notes", "alertmanager", "pagerduty", "github", "slack"]
    assert policy_for(config, "SEV2", "search").timeline_sources == ["incident", "notes"]  # other services: default
    integrations = build(config)
    try:
        sources = integrations.timeline_sources
        assert set(sources) == {"incident", "notes", "alertmanager", "pagerduty", "github", "slack"}
        pd = sources["pagerduty"]
        assert isinstance(pd, PagerDutyTimelineSource) and pd.config.token == "pd-secret"
        gh = sources["github"]
        assert isinstance(gh, GitHubTimelineSource) and gh.config.token == "gh-secret"
        assert gh.config.slack_before == timedelta(hours=3)
        assert gh.config.service_repositories == {"checkout": ["acme/checkout", "acme/payments"]}
        slack = sources["slack"]
        assert isinstance(slack, SlackTimelineSource) and slack.config.token == "xoxb-secret"
        assert slack.config.reactions == {"fire": "detection", "eyes": "acknowledge"}
        assert slack.config.slack_before == timedelta(minutes=30)
    finally:
        integrations.store.close()


def test_the_example_config_documents_the_sections_and_loads(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "closeloop" / "examples" / "closeloop.toml"
    text = example.read_text()
    for section in ("pagerduty", "github", "slack", "alertmanager", "jira"):
        assert f"[timeline.{section}]" in text
    for env in ("CLOSELOOP_PAGERDUTY_TOKEN", "CLOSELOOP_GITHUB_TOKEN", "CLOSELOOP_SLACK_TOKEN"):
        assert env in text
    # the commented examples, uncommented, are a valid config
    uncommented = "\n".join(line[2:] if line.startswith("# [timeline") or line.startswith("# timeline")
                            or (line.startswith("# ") and "=" in line and in_timeline) else line
                            for line, in_timeline in _with_section(text.splitlines()))
    path = tmp_path / "closeloop.toml"
    path.write_text(uncommented.replace('data_dir = ".closeloop"', f'data_dir = "{tmp_path}"'))
    config = load(path, env={})
    assert {name for kind, name in config.plugin_settings if kind == "timeline"} >= {"pagerduty", "slack", "github",
                                                                                    "jira"}


def _with_section(lines: list[str]) -> list[tuple[str, bool]]:
    """Each line with whether it sits in a commented `# [timeline.x]` block."""
    out, inside = [], False
    for line in lines:
        if line.startswith("# [timeline."):
            inside = True
        elif line.startswith("[") or not line.strip():
            inside = False
        out.append((line, inside))
    return out
