"""The timeline stage with real sources: a lifecycle (time-skipping server, the real worker and activities)
whose incident has PagerDuty log entries, GitHub changes and a Slack channel on the stand-ins, reached
through their real clients (httpx, PyGithub, slack-sdk), every response validated against the vendors'
descriptions. The collected timeline is one sorted, deduplicated list, and the draft shows it with the
derived durations; a source that fails becomes a note and the lifecycle goes on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from closeloop.integrations.registry import Integrations
from closeloop.models import Incident, Stage, TimelineEvent
from closeloop.standins.github import GitHubStandin
from closeloop.standins.slack import SlackStandin
from closeloop.workflows.postmortem import PostmortemWorkflow
from tests.standins.fixtures import GITHUB_SPEC, PAGERDUTY_SPEC, SLACK_SPEC, validated
from tests.standins.pagerduty import PagerDutyStandin
from tests.temporal_env import App, running_app
from tests.workflows.drive import draft

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
REPO = "acme/checkout"
CHANNEL = "C0CHECKOUT"
PD_ID = "PABC123"


@dataclass
class Standins:
    pagerduty: PagerDutyStandin
    github: GitHubStandin
    slack: SlackStandin


@pytest.fixture
def standins() -> Iterator[Standins]:
    """All three stand-ins; each must have validated at least one response by the end of the test."""
    with validated(PagerDutyStandin, PAGERDUTY_SPEC, must_serve=True, token="pd-token", max_limit=3) as pd, \
            validated(GitHubStandin, GITHUB_SPEC, must_serve=True) as gh, \
            validated(SlackStandin, SLACK_SPEC, must_serve=True, token="xoxb-test") as slack:
        yield Standins(pd, gh, slack)


def _config_extra(s: Standins) -> str:
    return f"""
[services.checkout.policy]
timeline_sources = ["incident", "notes", "pagerduty", "github", "slack"]

[people.bob.handles]
github = "bob-gh"
slack = "U0BOB"

[timeline.pagerduty]
url = "{s.pagerduty.url}"
page_size = 3
timeout = 2.0

[timeline.github]
base_url = "{s.github.base_url}"
repositories = ["{REPO}"]
slack_before = "2h"
page_size = 5
timeout = 2.0

[timeline.slack]
base_url = "{s.slack.base_url}"
service_channels = {{ checkout = "{CHANNEL}" }}
slack_before = "30m"
page_size = 3
timeout = 2.0
"""


@pytest_asyncio.fixture
async def timeline_app(time_env: WorkflowEnvironment, tmp_path: Path, standins: Standins,
                       monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> AsyncIterator[App]:
    tokens = getattr(request, "param", {})
    monkeypatch.setenv("CLOSELOOP_PAGERDUTY_TOKEN", tokens.get("pagerduty", "pd-token"))
    monkeypatch.setenv("CLOSELOOP_GITHUB_TOKEN", "gh-token")
    monkeypatch.setenv("CLOSELOOP_SLACK_TOKEN", tokens.get("slack", "xoxb-test"))

    def all_sources(integrations: Integrations) -> None:
        assert {"pagerduty", "github", "slack"} <= set(integrations.timeline_sources)

    async with running_app(time_env, tmp_path, extra=_config_extra(standins), adjust=all_sources) as the_app:
        yield the_app


def the_incident() -> Incident:
    return Incident(source="pagerduty", external_id=PD_ID, title="Checkout returns 500s", severity="SEV2",
                    services=["checkout"], commander="alice", participants=["bob"], started_at=T0,
                    detected_at=T0 + 3 * M, mitigated_at=T0 + 25 * M, resolved_at=T0 + 55 * M)


def seed(s: Standins, app: App, inc: Incident) -> None:
    s.pagerduty.add_incident(PD_ID, [
        ("trigger_log_entry", T0 + 3 * M, "Triggered through the API"),
        ("notify_log_entry", T0 + 3 * M + timedelta(seconds=5), "Notified Alice by push", {"agent": "Alice"}),
        ("acknowledge_log_entry", T0 + 8 * M, "Acknowledged by Alice", {"agent": "Alice"}),
        ("escalate_log_entry", T0 + 12 * M, "Escalated to Bob", {"assignees": ["Bob"]}),
        ("annotate_log_entry", T0 + 20 * M, "Note added", {"agent": "Bob", "note": "Rolled back deploy 4711"}),
        ("resolve_log_entry", T0 + 55 * M, "Resolved by Bob", {"agent": "Bob"}),
    ])
    s.github.add_repo(REPO)
    s.github.add_pull(REPO, "Cache payment tokens", created=T0 - 5 * 60 * M, merged_at=T0 - 40 * M, user="bob-gh")
    s.github.add_pull(REPO, "Old cleanup", created=T0 - 50 * 60 * M, merged_at=T0 - 30 * 60 * M)
    s.github.add_deployment(REPO, T0 - 20 * M, sha="b" * 40, ref="v4711", creator="bob-gh",
                            description="release 4711")
    s.github.add_deployment(REPO, T0 - 10 * 60 * M, sha="a" * 40, ref="v4710")  # before the window
    s.github.add_commit(REPO, T0 + 21 * M, 'Revert "Cache payment tokens"', author="bob-gh")
    s.slack.add_channel(CHANNEL)
    s.slack.post(CHANNEL, T0 - 2 * 60 * M, "lunch anyone?")  # before the window
    s.slack.post(CHANNEL, T0 + 70 * M, "retro on thursday")  # after the resolution
    s.slack.post(CHANNEL, T0 + 4 * M, "checkout 500s are paging", user="U0BOB",
                 reactions={"rotating_light": ["U0ALICE"]})
    s.slack.post(CHANNEL, T0 + 9 * M, "looking", user="U0ALICE", reactions={"eyes": ["U0BOB"]})
    s.slack.post(CHANNEL, T0 + 15 * M, "is it the deploy?", user="U0BOB")
    s.slack.post(CHANNEL, T0 + 24 * M, "rollback done, error rate dropping", user="U0BOB",
                 reactions={"adhesive_bandage": ["U0ALICE"]})
    s.slack.post(CHANNEL, T0 + 54 * M, "all clear", user="U0ALICE", reactions={"white_check_mark": ["U0BOB"]})
    # a hand note that says what PagerDuty's annotation says, at the same minute: kept once
    app.store.records.record_incident(inc)
    app.store.records.add_timeline_events(inc, [TimelineEvent(at=T0 + 20 * M, source="notes", kind="note",
                                                              text="Note added: Rolled back deploy 4711",
                                                              actor="bob")],
                                          notes=True)


def slack_calls(slack: SlackStandin) -> int:
    return slack.requests["GET /conversations.history"] + slack.requests["POST /conversations.history"]


async def test_timeline_from_pagerduty_github_and_slack_in_the_draft(timeline_app: App, standins: Standins) -> None:
    app, inc = timeline_app, the_incident()
    seed(standins, app, inc)
    handle = await app.resolve(inc)
    state = await app.wait_stage(handle, Stage.drafting, timeout=60)
    timeline = state.timeline

    # one list, sorted, no duplicates, with events from every source
    assert [e.at for e in timeline] == sorted(e.at for e in timeline)
    assert len({e.dedup_key() for e in timeline}) == len(timeline)
    assert {e.source for e in timeline} == {"pagerduty", "github", "slack", "notes"}
    assert sum("Rolled back deploy 4711" in e.text for e in timeline) == 1
    assert not any(e.source == "closeloop" for e in timeline)  # no failure notes
    facts = [(e.at - T0, e.source, e.kind, e.key_moment) for e in timeline if e.text in (
        "Triggered through the API", "Acknowledged by Alice", "looking", "rollback done, error rate dropping",
        "all clear", "Resolved by Bob")]
    assert facts == [
        (3 * M, "pagerduty", "detection", True), (8 * M, "pagerduty", "acknowledge", True),
        (9 * M, "slack", "acknowledge", True), (24 * M, "slack", "mitigation", True),
        (54 * M, "slack", "resolution", True), (55 * M, "pagerduty", "resolution", True),
    ]
    github = [(e.at - T0, e.kind) for e in timeline if e.source == "github"]
    assert github == [(-40 * M, "change"), (-20 * M, "deploy"), (21 * M, "commit")]
    noise = ("lunch anyone?", "retro on thursday", "Old cleanup")
    assert not any(e.text in noise or "v4710" in e.text for e in timeline)
    assert len([e for e in timeline if e.source == "slack"]) == 5
    # paging: 6 log entries, 3 a page; 5 messages in the window, 3 a page
    assert standins.pagerduty.requests["GET /incidents/{id}/log_entries"] == 2
    assert slack_calls(standins.slack) == 2

    # the draft shows the timeline and the durations derived from it
    draft_text = Path(state.draft_ref).read_text()
    assert "- Time to detect: 3m" in draft_text
    assert "- Time to acknowledge: 5m" in draft_text  # detected 10:03, first acknowledgement 10:08 (PagerDuty)
    assert "- Time to mitigate: 25m" in draft_text
    assert "- Time to resolve: 55m" in draft_text
    rows = [line for line in draft_text.splitlines() if line.startswith("| 2026-11-02 ")]
    assert len(rows) == len(timeline)
    assert rows[0].startswith("| 2026-11-02 09:20 UTC | change | PR #1 merged into acme/checkout@main: "
                              "Cache payment tokens")
    assert any(r.startswith("| 2026-11-02 10:08 UTC | acknowledge | **Acknowledged by Alice** ([link]("
                            + standins.pagerduty.url) and r.endswith(" | Alice | pagerduty |") for r in rows)
    assert "| 2026-11-02 10:24 UTC | mitigation | **rollback done, error rate dropping** | bob | slack |" in rows
    assert "| 2026-11-02 10:20 UTC | note | Note added: Rolled back deploy 4711 | bob | notes |" in rows
    assert any(r.startswith("| 2026-11-02 09:40 UTC | deploy | Deployment of v4711 (bbbbbbb) to production in "
                            "acme/checkout: release 4711 ([link](") and r.endswith(" | bob | github |") for r in rows)


@pytest.mark.parametrize("timeline_app", [{"slack": "xoxb-revoked"}], indirect=True)
async def test_failing_sources_become_notes_and_the_lifecycle_goes_on(timeline_app: App,
                                                                      standins: Standins) -> None:
    app, inc = timeline_app, the_incident()
    seed(standins, app, inc)
    standins.pagerduty.fail_next(10, status=500)  # PagerDuty is down: every try fails
    handle = await app.resolve(inc)
    state = await app.wait_stage(handle, Stage.drafting, timeout=60)
    notes = [e.text for e in state.timeline if e.source == "closeloop"]
    assert len(notes) == 2, notes
    pd_note = next(n for n in notes if n.startswith("timeline source 'pagerduty' failed: "))
    assert "HTTP 500" in pd_note
    slack_note = next(n for n in notes if n.startswith("timeline source 'slack' failed: "))
    assert "invalid_auth" in slack_note and "xoxb" not in slack_note
    assert standins.pagerduty.requests["GET /incidents/{id}/log_entries"] == 3  # BEST_EFFORT: three tries
    assert slack_calls(standins.slack) == 1  # a bad token is not retried
    # the sources that answered are there, and so is the draft, with the notes
    assert {e.source for e in state.timeline} >= {"github", "notes", "pagerduty", "closeloop"}
    draft_text = Path(state.draft_ref).read_text()
    assert "timeline source &#39;pagerduty&#39; failed" in draft_text or "timeline source 'pagerduty' failed" \
        in draft_text
    assert "- Time to acknowledge: unknown" in draft_text  # no acknowledgement: PagerDuty and Slack failed

    await handle.execute_update(PostmortemWorkflow.submit_draft, draft())
    await app.wait_stage(handle, Stage.in_review)
