"""Periodic sweeps, started by Temporal Schedules (closeloop/schedules.py), never by a polling loop."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from closeloop.activities import digest, reconcile
    from closeloop.activities._shared import EXTERNAL, SWEEP
    from closeloop.models import Model


class SweepInput(Model):
    """Empty today; a model so the sweep can grow inputs without breaking running schedules."""

    note: str = ""


@workflow.defn
class StalledDigestWorkflow:
    """Tell every manager which postmortems and action items of their reports are stalled or overdue."""

    @workflow.run
    async def run(self, inp: SweepInput) -> digest.DigestResult:
        now: datetime = workflow.now()
        return await workflow.execute_activity(digest.send_stalled_digest, digest.DigestInput(at=now),
                                               **EXTERNAL)  # type: ignore[arg-type]


@workflow.defn
class TicketSyncWorkflow:
    """Reconcile every tracked action item with its ticket (activities/reconcile.py): what a lost webhook
    missed reaches the item's workflow as a `ticket_status` signal from the sweep."""

    @workflow.run
    async def run(self, inp: SweepInput) -> reconcile.SyncSummary:
        return await workflow.execute_activity(reconcile.reconcile_tickets, reconcile.SyncInput(at=workflow.now()),
                                               **SWEEP)  # type: ignore[arg-type]
