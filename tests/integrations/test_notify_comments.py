"""The `notify` activity also puts the notification on the item's ticket as a comment. A ticket that is gone
(deleted on the tracker: GitHub answers 410, Jira 404) must not fail the notification, or the item's
workflow with it: the person is told, the comment is skipped, and the ticket sync handles the ticket. A
tracker that is down still makes the activity retry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from closeloop.activities.notify import NotifyActivities, NotifyInput
from closeloop.integrations.registry import Integrations
from closeloop.standins.github import GitHubStandin
from closeloop.standins.jira import JiraStandin
from tests.integrations.test_close_ticket import github, integrations, jira, opened  # noqa: F401 - fixtures

AT = datetime(2026, 11, 22, 12, tzinfo=UTC)


def notifying(integrations: Integrations) -> NotifyActivities:
    return NotifyActivities(integrations.directory, integrations.notifiers, integrations.tracker,
                            integrations.template_dir)


def reminder(tracker: str, ticket_key: str, n: int) -> NotifyInput:
    return NotifyInput(key=f"postmortem/api/INC-7/item-{n}/c0/reminder/{n}", kind="item_reminder", target="owner",
                       relative_to="bob", postmortem_id="postmortem/api/INC-7",
                       item_id=f"postmortem/api/INC-7/item-{n}",
                       at=AT, context={"item_title": f"Item {n}"}, tracker=tracker, ticket_key=ticket_key)


@pytest.mark.parametrize("tracker", ["jira", "github"])
def test_a_deleted_ticket_skips_the_comment_and_still_notifies(tracker: str, integrations: Integrations,  # noqa: F811
                                                               jira: JiraStandin, github: GitHubStandin) -> None:  # noqa: F811
    item = opened(tracker, 1)
    assert item.ticket_key
    if tracker == "jira":
        jira.delete(item.ticket_key)
    else:
        github.delete_issue("acme/ops", int(item.ticket_key.split("#")[1]))

    assert ActivityEnvironment().run(notifying(integrations).notify, reminder(tracker, item.ticket_key, 1)) == "bob"
    sent = integrations.store.local.notifications("postmortem/api/INC-7")
    assert [(n.kind, n.recipient) for n in sent] == [("item_reminder", "bob")]


@pytest.mark.parametrize("tracker", ["jira", "github"])
def test_a_tracker_that_is_down_makes_the_notification_retry(tracker: str, integrations: Integrations,  # noqa: F811
                                                             jira: JiraStandin, github: GitHubStandin) -> None:  # noqa: F811
    item = opened(tracker, 2)
    assert item.ticket_key
    (jira if tracker == "jira" else github).fail_next(1, status=503)
    with pytest.raises(ApplicationError) as down:
        ActivityEnvironment().run(notifying(integrations).notify, reminder(tracker, item.ticket_key, 2))
    assert not down.value.non_retryable
    # the retry delivers nothing twice: the notification was recorded once, by its key
    assert ActivityEnvironment().run(notifying(integrations).notify, reminder(tracker, item.ticket_key, 2)) == "bob"
    assert len(integrations.store.local.notifications("postmortem/api/INC-7")) == 1
