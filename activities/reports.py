"""The effectiveness review for reliability leads: the month's report, published through the publishers and sent
to `[reports] effectiveness_to`. Run by a Temporal Schedule (closeloop/sweep_schedules.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from temporalio import activity

from closeloop.activities.notify import NotifyActivities
from closeloop.activities.support import external_errors, log
from closeloop.config import ReportSettings
from closeloop.directory import Directory
from closeloop.integrations.base import Notification, Publisher
from closeloop.models import Model
from closeloop.readmodel import Insights
from closeloop.rendering import render_effectiveness, render_notification


class ReviewInput(Model):
    at: datetime  # the run's (workflow) time: the review covers the calendar month before it


class ReviewResult(Model):
    since: datetime
    until: datetime
    document_ref: str | None
    recipients: list[str]
    items_done: int
    recurrences: int
    failing_services: list[str]


def previous_month(at: datetime) -> tuple[datetime, datetime]:
    """[the first of the month before `at`'s, the first of `at`'s month), in UTC."""
    at = at.astimezone(UTC)
    until = datetime(at.year, at.month, 1, tzinfo=UTC)
    since = datetime(until.year - 1, 12, 1, tzinfo=UTC) if until.month == 1 else until.replace(month=until.month - 1)
    return since, until


class ReportActivities:
    """The effectiveness review; holds the store's insights, the publishers, the directory, the notifications (for
    the channels that reach people), the `[reports]` settings and the template overrides."""

    def __init__(self, insights: Insights, publishers: Sequence[Publisher], people: Directory,
                 notify: NotifyActivities, settings: ReportSettings, template_dir: Path | None) -> None:
        self.insights = insights
        self.publishers = list(publishers)
        self.people = people
        self.notify = notify
        self.settings = settings
        self.template_dir = template_dir

    @activity.defn(name="effectiveness_review")
    def effectiveness_review(self, inp: ReviewInput) -> ReviewResult:
        """Make last month's review, publish it (each publisher idempotent by the period) and send it to the
        reliability leads (once each: the notification's key is the period's). A retry repeats nothing."""
        since, until = previous_month(inp.at)
        report = self.insights.effectiveness(since, until, failing_after=self.settings.failing_after)
        document = render_effectiveness(report, generated_at=inp.at, failing_after=self.settings.failing_after,
                                        template_dir=self.template_dir)
        refs: dict[str, str] = {}
        for publisher in self.publishers:
            with external_errors(f"publishing the effectiveness review through {publisher.name}"):
                refs[publisher.name] = publisher.publish(document, f"{document.postmortem_id}/publish")
        ref = next((r for name, r in refs.items() if name != "local"), None) or next(iter(refs.values()), None)
        failing = [f"{f.service} ({f.incidents} incidents)" for f in report.failing_services]
        context = {"since": since, "until": until, "items_done": report.items_done,
                   "effective": report.verdicts.effective, "ineffective": report.verdicts.ineffective,
                   "unknown": report.verdicts.unknown, "awaiting_verdict": report.awaiting_verdict,
                   "recurrences": len(report.recurred), "overdue_items": report.overdue_items, "failing": failing,
                   "document_ref": ref}
        sent = []
        for key in self.settings.effectiveness_to:
            person = self.people.person(key)
            subject, body = render_notification("effectiveness_review",
                                                {**context, "recipient": person.name if person else key},
                                                template_dir=self.template_dir)
            notification = Notification(key=f"{document.postmortem_id}/{key}", kind="effectiveness_review",
                                        recipient=key, subject=subject, body=body, at=inp.at,
                                        postmortem_id=document.postmortem_id,
                                        links={"review": ref} if ref and ref.startswith("http") else {})
            self.notify.deliver(notification, person)
            sent.append(key)
        log().info("effectiveness review", since=since.isoformat(), until=until.isoformat(), ref=ref, refs=refs,
                   items_done=report.items_done, recurrences=len(report.recurred), sent_to=sent)
        return ReviewResult(since=since, until=until, document_ref=ref, recipients=sent,
                            items_done=report.items_done, recurrences=len(report.recurred),
                            failing_services=[f.service for f in report.failing_services])
