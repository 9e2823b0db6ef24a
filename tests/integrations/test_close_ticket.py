"""The `open_ticket` and `close_ticket` activities (run in Temporal's ActivityEnvironment) with the trackers
built from config by the registry: Jira and GitHub over HTTP against their stand-ins (every response
validated against the vendor's description), and the local tracker.

Closing follows the item: `done` closes the ticket as completed, `wont_do` with the tracker's won't-do
resolution; a ticket closed already is left as it is (no second transition), and an open item or one
without a ticket closes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from closeloop.activities.tickets import OpenTicketInput, TicketActivities
from closeloop.integrations.registry import Integrations, build
from closeloop.models import ActionItem, ItemStatus
from closeloop.standins.github import GitHubStandin
from closeloop.standins.jira import JiraStandin
from tests.standins.fixtures import GITHUB_SPEC, JIRA_SPEC, validated
from tests.temporal_env import incident, make_config


@pytest.fixture
def jira() -> Iterator[JiraStandin]:
    with validated(JiraStandin, JIRA_SPEC, project="CL", users={"acc-bob": "Bob"}) as server:
        yield server


@pytest.fixture
def github() -> Iterator[GitHubStandin]:
    with validated(GitHubStandin, GITHUB_SPEC) as server:
        server.add_repo("acme/ops", collaborators=["bob-gh"])
        yield server


@pytest.fixture
def integrations(tmp_path: Path, jira: JiraStandin, github: GitHubStandin) -> Iterator[Integrations]:
    config = make_config(tmp_path, extra=f"""
[people.bob.handles]
jira = "acc-bob"
github = "bob-gh"

[trackers.jira]
url = "{jira.url}"
project = "CL"
timeout = 2.0

[trackers.github]
base_url = "{github.base_url}"
repo = "acme/ops"
timeout = 2.0
""")
    built = build(config)
    ACTIVITIES[:] = [TicketActivities(built.directory, built.tracker, built.store)]
    yield built
    built.store.close()


ACTIVITIES: list[TicketActivities] = []  # the ticket activities on the `integrations` fixture's trackers


def open_ticket(inp: OpenTicketInput) -> object:
    return ACTIVITIES[0].open_ticket(inp)


def close_ticket(item: ActionItem) -> object:
    return ACTIVITIES[0].close_ticket(item)


def item(tracker: str, n: int) -> ActionItem:
    return ActionItem(id=f"postmortem/api/INC-7/item-{n}", postmortem_id="postmortem/api/INC-7", title=f"Item {n}",
                      owner="bob", priority="P2", due_at=datetime(2026, 12, 1, tzinfo=UTC), tracker=tracker)


def opened(tracker: str, n: int) -> ActionItem:
    env = ActivityEnvironment()
    it = item(tracker, n)
    ticket = env.run(open_ticket, OpenTicketInput(item=it, incident=incident("INC-7")))
    return it.model_copy(update={"ticket_key": ticket.key, "ticket_url": ticket.url})


@pytest.mark.parametrize("tracker", ["jira", "github", "local"])
def test_close_ticket_follows_the_item_once(tracker: str, integrations: Integrations, jira: JiraStandin,
                                            github: GitHubStandin) -> None:
    env = ActivityEnvironment()
    done = opened(tracker, 1).model_copy(update={"status": ItemStatus.done})
    dropped = opened(tracker, 2).model_copy(update={"status": ItemStatus.wont_do})
    still_open = opened(tracker, 3)

    closed = env.run(close_ticket, done)
    assert closed is not None and (closed.key, closed.status) == (done.ticket_key, "done")
    wont = env.run(close_ticket, dropped)
    assert wont is not None and wont.status == "wont_do"
    assert env.run(close_ticket, still_open) is None
    assert env.run(close_ticket, item(tracker, 4).model_copy(update={"status": ItemStatus.done})) is None  # no ticket

    again = env.run(close_ticket, done)  # idempotent: already closed, nothing changes
    assert again is not None and again.status == "done"
    states = integrations.tracker(tracker).statuses([done.ticket_key, dropped.ticket_key, still_open.ticket_key])  # type: ignore[list-item]
    assert [states[k].status for k in (done.ticket_key, dropped.ticket_key, still_open.ticket_key)] == \
        ["done", "wont_do", "open"]
    if tracker == "jira":
        assert jira.requests["POST /rest/api/2/issue/{key}/transitions"] == 2
        assert jira.issues[dropped.ticket_key]["resolution"] == "Won't Do"  # type: ignore[index]
        assert jira.issues[done.ticket_key]["resolution"] == "Done"  # type: ignore[index]
    elif tracker == "github":
        assert github.requests["PATCH /repos/{owner}/{repo}/issues/{issue_number}"] == 2
        numbers = [int(k.split("#")[1]) for k in (done.ticket_key, dropped.ticket_key)]  # type: ignore[union-attr]
        assert [github.repos["acme/ops"]["issues"][n]["state_reason"] for n in numbers] == ["completed", "not_planned"]
    else:
        rows = {r.key: r for r in integrations.store.local.tickets()}
        assert (rows[done.ticket_key].status, rows[dropped.ticket_key].status) == ("done", "wont_do")  # type: ignore[index]

    # reopened on the tracker's side and completed again in closeloop: closed again
    integrations.tracker(tracker).reopen(done.ticket_key)  # type: ignore[arg-type]
    assert integrations.tracker(tracker).statuses([done.ticket_key])[done.ticket_key].status == "open"  # type: ignore[index,list-item]
    assert env.run(close_ticket, done).status == "done"  # type: ignore[union-attr]


@pytest.mark.parametrize(("status", "secondary", "low", "high"), [(403, False, 25, 31), (403, True, 7, 7),
                                                                   (429, True, 7, 7)])
def test_github_rate_limits_become_the_activity_retry_delay(status: int, secondary: bool, low: float, high: float,
                                                            integrations: Integrations,
                                                            github: GitHubStandin) -> None:
    """403 with x-ratelimit-remaining 0 (wait until x-ratelimit-reset), 403/429 with Retry-After: the
    activity fails retryably with Temporal's next_retry_delay set to that wait, and the retry creates the issue."""
    from temporalio.exceptions import ApplicationError

    github.rate_limit_next(retry_after=30 if not secondary else 7, status=status, secondary=secondary,
                           path="POST /repos/{owner}/{repo}/issues")
    with pytest.raises(ApplicationError) as err:
        opened("github", 1)
    assert not err.value.non_retryable and err.value.next_retry_delay is not None
    assert low <= err.value.next_retry_delay.total_seconds() <= high
    assert github.repos["acme/ops"]["issues"] == {}
    assert opened("github", 1).ticket_key == "acme/ops#1"
