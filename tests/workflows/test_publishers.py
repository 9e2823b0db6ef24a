"""Several publishers at once, different per service, each announcing through the configured channels: a whole
lifecycle per service on the time-skipping server, publishing through the real Confluence and GitHub clients to
their stand-ins (every answer validated against Atlassian's and GitHub's descriptions) and announcing in Slack
(the Slack stand-in, validated against Slack's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from closeloop.config import ConfigError
from closeloop.models import ActionItemSpec
from closeloop.standins.confluence import ConfluenceStandin
from closeloop.standins.github import GitHubStandin
from closeloop.standins.slack import SlackStandin
from tests.standins.fixtures import CONFLUENCE_SPEC, GITHUB_SPEC, SLACK_SPEC, validated
from tests.temporal_env import incident, make_config, record_if_asked, running_app
from tests.workflows.drive import to_following_up

CONFLUENCE_TOKEN, GITHUB_TOKEN, SLACK_TOKEN = "atl-token", "ghp_token", "xoxb-token"
REPO = "acme/postmortems"
ITEM = ActionItemSpec(title="Add a canary stage", owner="bob", priority="P2", done_when="every deploy uses it")


def settings(confluence: ConfluenceStandin, github: GitHubStandin, slack: SlackStandin) -> tuple[str, str]:
    extra = (f'\n[publishers.confluence]\nbase_url = "{confluence.site}"\nspace_key = "ENG"\n'
             f'email = "closeloop@example.com"\ntimeout = 5.0\n'
             f'\n[publishers.github]\nrepo = "{REPO}"\nbase_url = "{github.base_url}"\n'
             f'\n[notifiers.slack]\nbase_url = "{slack.base_url}"\n'
             # checkout's postmortems go to Confluence, payments' to the Git repository
             '\n[services.checkout.policy]\npublishers = ["confluence"]\n'
             '\n[services.payments.policy]\npublishers = ["github"]\n')
    notify = ('defer_to_working_hours = false\n'
              'announce = { published = ["slack:C0INCIDENTS"], "published.github" = ["slack:C0PAYMENTS"], '
              '"published.confluence" = ["slack:C0WIKIPAGES"] }')
    return extra, notify


async def test_each_service_publishes_through_its_publishers_and_each_publisher_announces(
        time_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOSELOOP_CONFLUENCE_API_TOKEN", CONFLUENCE_TOKEN)
    monkeypatch.setenv("CLOSELOOP_GITHUB_TOKEN", GITHUB_TOKEN)
    monkeypatch.setenv("CLOSELOOP_SLACK_TOKEN", SLACK_TOKEN)
    with validated(ConfluenceStandin, CONFLUENCE_SPEC, email="closeloop@example.com", token=CONFLUENCE_TOKEN,
                   must_serve=True) as confluence, \
            validated(GitHubStandin, GITHUB_SPEC, token=GITHUB_TOKEN, must_serve=True) as github, \
            validated(SlackStandin, SLACK_SPEC, token=SLACK_TOKEN) as slack:
        github.add_repo(REPO)
        for room in ("C0INCIDENTS", "C0PAYMENTS", "C0WIKIPAGES"):
            slack.add_channel(room)
        extra, notify = settings(confluence, github, slack)
        async with running_app(time_env, tmp_path, extra=extra, notify=notify) as app:
            checkout = incident(title="Checkout returns 500s", services=["checkout"])
            _h, state = await to_following_up(app, checkout, ITEM)
            assert list(state.document_refs) == ["local", "confluence"]
            page_url = state.document_refs["confluence"]
            assert state.document_ref == page_url and "/pages/" in page_url
            [page] = [p for p in confluence.pages.values() if p["title"].startswith("Postmortem:")]
            assert page["title"].startswith("Postmortem: Checkout returns 500s")
            assert github.repos[REPO]["pulls"] == {}  # not checkout's publisher

            payments = incident(title="Payments declined", services=["payments"], commander="alice")
            _h, paid = await to_following_up(app, payments, ITEM)
            assert list(paid.document_refs) == ["local", "github"]
            [pull] = github.repos[REPO]["pulls"].values()
            assert paid.document_ref == paid.document_refs["github"] and paid.document_ref.endswith(
                f"/pull/{pull['number']}")
            assert [p["title"] for p in confluence.pages.values() if p["title"].startswith("Postmortem:")] == [
                page["title"]]  # not payments' publisher
            # the local publisher always publishes: the files and the web app's library
            for s in (state, paid):
                assert Path(s.document_refs["local"]).read_text().startswith("<!DOCTYPE html>")

            # the announcements: the postmortems' room gets both, each publisher's room its own, with its link
            general = [m["text"] for m in slack.messages("C0INCIDENTS")]
            assert [t.splitlines()[0] for t in general] == ["Postmortem published: Checkout returns 500s",
                                                            "Postmortem published: Payments declined"]
            assert f"Read it: {page_url}" in general[0] and f"Read it: {paid.document_ref}" in general[1]
            [wiki] = [m["text"] for m in slack.messages("C0WIKIPAGES")]
            assert "Checkout returns 500s" in wiki and f"Read it (confluence): {page_url}" in wiki
            [repo] = [m["text"] for m in slack.messages("C0PAYMENTS")]
            assert "Payments declined" in repo and f"Read it (github): {paid.document_ref}" in repo

            # the people are told too, and each message names the publisher's link
            told = [n for n in app.store.local.notifications(payments.workflow_id) if n.kind == "published"]
            assert told and all(f"Read it: {paid.document_ref}" in n.body for n in told)
            await record_if_asked(app, "test_publishers_per_service")


def test_a_publisher_a_policy_or_an_announcement_names_must_be_configured(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"publisher 'github' has no \[publishers.github\] section"):
        make_config(tmp_path, extra='\n[services.payments.policy]\npublishers = ["github"]\n')
    with pytest.raises(ConfigError, match="notify.announce.published.wiki: publisher 'wiki' has no"):
        make_config(tmp_path, notify='announce = { "published.wiki" = [] }')
    assert make_config(tmp_path, extra='\n[services.payments.policy]\npublishers = ["local"]\n')
