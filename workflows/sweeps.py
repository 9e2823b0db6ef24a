"""Periodic sweeps, started by Temporal Schedules (closeloop/sweep_schedules.py), never by a polling loop."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import closeloop.contract as contract
    from closeloop.activities.digest import DigestActivities, DigestInput
    from closeloop.activities.notify import NotifyActivities, ReminderDigestInput
    from closeloop.activities.options import EXTERNAL, HOUSEKEEPING, SWEEP
    from closeloop.activities.reconcile import ReconcileActivities, SyncInput
    from closeloop.activities.reports import ReportActivities, ReviewInput, ReviewResult
    from closeloop.activities.retention import PruneInput, RetentionActivities
    from closeloop.models import DigestResult, PruneResult, SweepInput, SyncSummary
    from closeloop.workflows._common import call



# Runs recorded before it send the managers' digest only.
REMINDER_DIGEST_PATCH = "reminder-digests"


@workflow.defn(name=contract.STALLED_DIGEST_WORKFLOW)
class StalledDigestWorkflow:
    """Tell every manager which postmortems and action items of their reports are stalled or overdue; and send
    the people who take reminders as a digest the reminders that waited for it."""

    @workflow.run
    async def run(self, inp: SweepInput) -> DigestResult:
        now: datetime = workflow.now()
        result = await call(DigestActivities.send_stalled_digest, DigestInput(at=now), EXTERNAL)
        if workflow.patched(REMINDER_DIGEST_PATCH):  # the same morning run brings reminder digests
            await call(NotifyActivities.send_reminder_digests, ReminderDigestInput(at=now), EXTERNAL)
        return result


@workflow.defn(name=contract.TICKET_SYNC_WORKFLOW)
class TicketSyncWorkflow:
    """Reconcile every tracked action item with its ticket (activities/reconcile.py): what a lost webhook
    missed reaches the item's workflow as a `ticket_status` signal from the sweep."""

    @workflow.run
    async def run(self, inp: SweepInput) -> SyncSummary:
        return await call(ReconcileActivities.reconcile_tickets, SyncInput(at=workflow.now()), SWEEP)


@workflow.defn(name=contract.RETENTION_WORKFLOW)
class RetentionWorkflow:
    """Delete what is past its retention (`[retention]`, activities/retention.py): the delivery log, the outbox,
    rate events and, when configured, closed lifecycles."""

    @workflow.run
    async def run(self, inp: SweepInput) -> PruneResult:
        return await call(RetentionActivities.prune_store, PruneInput(at=workflow.now()), HOUSEKEEPING)


@workflow.defn(name=contract.EFFECTIVENESS_REVIEW_WORKFLOW)
class EffectivenessReviewWorkflow:
    """The monthly effectiveness review for reliability leads (activities/reports.py): last month's action items
    and their verdicts, recurrences, overdue items and failing services, published and sent."""

    @workflow.run
    async def run(self, inp: SweepInput) -> ReviewResult:
        return await call(ReportActivities.effectiveness_review, ReviewInput(at=workflow.now()), EXTERNAL)
