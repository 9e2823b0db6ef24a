"""The monthly effectiveness review for reliability leads: a Temporal Schedule runs EffectivenessReviewWorkflow,
which makes last month's report, publishes it and sends it to `[reports] effectiveness_to`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from closeloop.activities.reports import previous_month
from closeloop.config import ConfigError
from closeloop.models import ActionItemSpec, CompleteItem, Stage, SweepInput
from closeloop.rendering import effectiveness_document_id
from closeloop.workflows.action_item import ActionItemWorkflow
from closeloop.workflows.sweeps import EffectivenessReviewWorkflow
from tests.temporal_env import incident, make_config, record_if_asked, running_app
from tests.workflows.drive import to_following_up
from tests.workflows.test_sweeps import wait_done

LEADS = '\n[reports]\neffectiveness_to = ["carol", "dave"]\n'


def next_month(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return datetime(at.year + (at.month == 12), at.month % 12 + 1, 1, tzinfo=UTC)


def test_previous_month_is_the_calendar_month_before() -> None:
    assert previous_month(datetime(2026, 12, 1, 9, tzinfo=UTC)) == (datetime(2026, 11, 1, tzinfo=UTC),
                                                                     datetime(2026, 12, 1, tzinfo=UTC))
    assert previous_month(datetime(2027, 1, 31, 23, tzinfo=UTC)) == (datetime(2026, 12, 1, tzinfo=UTC),
                                                                      datetime(2027, 1, 1, tzinfo=UTC))


async def test_the_monthly_review_is_published_and_sent_to_the_leads_once(time_env: WorkflowEnvironment,
                                                                          tmp_path: Path) -> None:
    async with running_app(time_env, tmp_path, extra=LEADS) as app:
        # start on the 2nd of next month, so everything below happens inside one calendar month
        now = await app.now()
        await app.env.sleep(next_month(now) + timedelta(days=1) - now)
        month_start = next_month(await app.now()) - timedelta(days=1)
        month_start = datetime(month_start.year, month_start.month, 1, tzinfo=UTC)

        first = incident(title="Checkout returns 500s", started_at=await app.now())
        _handle, state = await to_following_up(app, first, ActionItemSpec(
            title="Cap the DB pool", owner="bob", priority="P2", done_when="the limit is in the deploy config"))
        item = state.items[0]
        h = app.client.get_workflow_handle(item.id)
        await h.execute_update(ActionItemWorkflow.complete, CompleteItem(by="bob"))
        await app.wait_for(h, lambda s: s.phase == "waiting_effectiveness")
        await app.env.sleep(timedelta(days=1))
        second = incident(title="Checkout times out at peak", started_at=await app.now())
        again = await app.resolve(second)
        await app.wait_stage(again, Stage.drafting)

        # to the 1st of the month after, 09:30: the review covers the month all that happened in
        now = await app.now()
        await app.env.sleep(next_month(now) + timedelta(hours=9, minutes=30) - now)
        handles = []
        for n in (1, 2):  # a second run (a retry, a manual trigger) publishes the same and sends nothing again
            handle = await app.client.start_workflow(EffectivenessReviewWorkflow.run, SweepInput(),
                                                     id=f"review-{n}", task_queue=app.task_queue)
            await wait_done(handle)
            handles.append(handle)
            app.handles.append(handle)
        results = [await h.result() for h in handles]
        assert results[0] == results[1]
        review = results[0]
        assert (review.since, review.until) == (month_start, next_month(month_start))
        assert (review.items_done, review.recurrences, review.failing_services) == (1, 1, ["checkout"])
        assert review.recipients == ["carol", "dave"]

        # published through the publishers (here the local one): the Markdown and the HTML
        assert review.document_ref is not None and review.document_ref.endswith(".html")
        markdown = Path(review.document_ref).with_suffix(".md").read_text()
        assert markdown.startswith(f"# Effectiveness review: {month_start:%Y-%m-%d} to ")
        # the item's own effectiveness check (14 days after) found the recurrence too: ineffective
        assert "| Ineffective | 1 |" in markdown and "| Not judged yet | 0 |" in markdown
        assert "| Cap the DB pool | bob | checkout | prevent | ineffective | " + second.workflow_id + " |" in markdown
        assert "| checkout | 2 | 1 | 1 |" in markdown  # keeps failing: two incidents, its item, its recurrence
        assert "<h1>Effectiveness review:" in Path(review.document_ref).read_text()
        # not a postmortem: the library does not list it
        assert app.store.records.get_postmortem(effectiveness_document_id(review.since, review.until)) is None

        # sent to each lead once, with the figures and where to read it
        sent = [n for n in app.store.local.notifications() if n.kind == "effectiveness_review"]
        assert sorted(n.recipient for n in sent) == ["carol", "dave"]
        assert "1 action item(s) were completed: 0 effective, 1 ineffective, 0 unknown, 0 not judged yet" in \
            sent[0].body.replace("\n", " ")
        assert "- checkout (2 incidents)" in sent[0].body and review.document_ref in sent[0].body
        await record_if_asked(app, "test_the_monthly_review_is_published_and_sent_to_the_leads_once")


def test_the_review_schedule_follows_the_config(tmp_path: Path) -> None:
    from closeloop.sweep_schedules import _schedule, sweeps

    config = make_config(tmp_path, extra=LEADS + 'effectiveness_cron = "30 7 2 * *"\nfailing_after = 3\n')
    assert (config.reports.effectiveness_to, config.reports.failing_after) == (["carol", "dave"], 3)
    by_id = {s.schedule_id: s for s in sweeps(config.sync.every, config.retention.every,
                                              config.reports.effectiveness_cron)}
    schedule = _schedule("q", by_id["closeloop-effectiveness-review"])
    assert schedule.spec.cron_expressions == ["30 7 2 * *"]
    assert schedule.action.workflow == "EffectivenessReviewWorkflow"  # type: ignore[attr-defined]
    assert by_id["closeloop-effectiveness-review"].catchup_window == timedelta(days=1)
    for bad, where in (('effectiveness_to = ["nobody"]', "reports.effectiveness_to: unknown person 'nobody'"),
                       ('effectiveness_cron = "monthly"', "five-field cron"),
                       ('failing_after = 1', "reports.failing_after")):
        with pytest.raises(ConfigError, match=where):
            make_config(tmp_path, extra=f"\n[reports]\n{bad}\n")
