"""ActionItemWorkflow: one per action item, a child of its PostmortemWorkflow.

Opens the ticket, reminds before the deadline and escalates after it, waits for completion (a sync
Signal from the tracker or a person's Update), then, after the policy delay, reviews effectiveness:
did the same kind of incident recur, and what does the owner say?"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    import closeloop.contract as contract
    import closeloop.search_attributes as sa
    from closeloop.activities.options import EXTERNAL, STORE
    from closeloop.activities.records import RecordActivities
    from closeloop.activities.tickets import CancelTicketInput, OpenTicketInput, RecurrenceInput, TicketActivities
    from closeloop.chase_plan import ChaseAction, skip_past_reminders
    from closeloop.durations import format_duration
    from closeloop.integrations.base import Ticket
    from closeloop.models import (
        ActionItem,
        ActionItemInput,
        ActionItemState,
        ChaseState,
        CompleteItem,
        ItemStatus,
        SnoozeRequest,
        TicketStatusEvent,
        Verdict,
        VerdictInput,
        WontDoReason,
    )
    from closeloop.workflows._common import ChaseRunner, call, send, wait_until

ESCALATE_INEFFECTIVE_TO = ("owner", "manager", "skip_level")
# Patches (workflow.patched) for behaviour added while lifecycles were running; each guards only the new
# path, so histories recorded before it replay unchanged.
PATCH_TICKET_CHANGES = "ticket-deleted-or-moved"
PATCH_WONT_DO_REASON = "wont-do-asks-for-a-reason"
PATCH_CLOSE_TICKET = "close-the-ticket-of-an-item-completed-in-closeloop"
PATCH_TICKET_REFUSED = "a-refused-ticket-is-tried-again"
PATCH_CANCELLED = "a-cancelled-item-is-closed-and-its-ticket-told"


@workflow.defn(name=contract.ACTION_ITEM_WORKFLOW)
class ActionItemWorkflow:
    @workflow.init
    def __init__(self, inp: ActionItemInput) -> None:
        self.inp = inp
        self.s = inp.resume or ActionItemState(item=inp.item)
        self.chase: ChaseRunner | None = None

    @workflow.run
    async def run(self, inp: ActionItemInput) -> ActionItem:
        try:
            await self._run()
        except (asyncio.CancelledError, ActivityError) as e:
            # The lifecycle was cancelled (its CANCEL Update, or a cancellation request), maybe while an activity
            # ran: an open item is closed as cancelled, so nothing nags about it, and its ticket is told.
            if not is_cancelled_exception(e) or not workflow.patched(PATCH_CANCELLED):
                raise
            await self._cancelled()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.s.item

    async def _run(self) -> None:
        s, inp, policy = self.s, self.inp, self.inp.policy
        if inp.resume:
            s.runs += 1
            self._upsert_search_attributes()
        while s.phase != "closed":
            if s.phase == "opening":
                ticket = await self._open_ticket()
                s.item.ticket_key, s.item.ticket_url = ticket.key, ticket.url
                self._start_tracking()
                await self._save()
                await self._notify("opened", "item_opened", "owner", {})
            elif s.phase == "tracking":
                if not await self._track():
                    await self._continue_as_new()
                if s.ticket_change is not None:
                    await self._apply_ticket_change()
                    continue
                if s.item.status == ItemStatus.done:
                    assert s.item.completed_at is not None
                    s.phase = "waiting_effectiveness"
                    s.check_at = s.item.completed_at + policy.effectiveness_delay
                elif s.reason_needed and workflow.patched(PATCH_WONT_DO_REASON):
                    s.phase = "awaiting_reason"  # closed as won't do without a reason: ask the owner
                else:
                    s.phase = "closed"  # won't do
                if s.chase:
                    s.chase.stalled = False
                await self._save()
                if s.item.status == ItemStatus.done and s.completed_here and workflow.patched(PATCH_CLOSE_TICKET):
                    await self._close_ticket()
            elif s.phase == "awaiting_reason":
                await self._ask_reason()
            elif s.phase == "waiting_effectiveness":
                assert s.check_at is not None
                if await wait_until(lambda: s.item.status != ItemStatus.done or s.ticket_change is not None,
                                    s.check_at):
                    if s.ticket_change is not None:
                        await self._apply_ticket_change()
                        continue
                    await self._save()  # reopened: the handler moved it back to tracking
                    continue
                await self._check_recurrence()
            elif s.phase == "awaiting_verdict":
                assert s.verdict_due is not None
                await wait_until(lambda: s.owner_verdict is not None, s.verdict_due)
                await self._conclude()

    # ------------------------------------------------------------------ phases

    def _start_tracking(self) -> None:
        s, policy = self.s, self.inp.policy
        s.phase = "tracking"
        now = workflow.now()
        s.chase = skip_past_reminders(ChaseState(started_at=now, due_at=s.item.due_at), policy.reminder_every,
                                      policy.item_reminders_before)

    async def _track(self) -> bool:
        s, policy = self.s, self.inp.policy
        assert s.chase is not None
        self.chase = ChaseRunner(s.chase, every=policy.reminder_every, steps=policy.escalation,
                           before_due=policy.item_reminders_before)
        cycle = s.cycle

        async def act(action: ChaseAction) -> None:
            overdue = workflow.now() - s.item.due_at
            ctx = {"reminder_number": action.index + 1, "overdue": overdue if overdue.total_seconds() > 0 else None}
            if action.kind == "reminder":
                await self._notify(f"c{cycle}/reminder/{action.index}", "item_reminder", "owner", ctx,
                                   still_wanted=owed)
            elif action.kind == "stall":
                assert s.chase is not None
                s.chase.stalled = True
                await self._save()
            else:
                await self._notify(f"c{cycle}/escalation/{action.index}", "item_escalation",
                                   action.target or "owner", {**ctx, "level": action.index + 1}, still_wanted=owed)

        def owed() -> bool:
            return s.item.status == ItemStatus.open and s.ticket_change is None and s.cycle == cycle

        done = await self.chase.run(lambda: not owed(), act, self.inp.max_history_events)
        self.chase = None if done else self.chase
        return done

    async def _open_ticket(self) -> Ticket:
        """Open the item's ticket (found by marker if it exists). Outages are the activity's retries; a
        failure no retry fixes (the tracker refuses the ticket: a wrong project, an unknown assignee) must
        not lose the item either: the postmortem owner is told once, and it is tried again every reminder
        interval until someone fixes the cause."""
        s = self.s
        while True:
            try:
                return await call(TicketActivities.open_ticket,
                                  OpenTicketInput(item=s.item, incident=self.inp.incident), EXTERNAL)
            except ActivityError as e:
                if not workflow.patched(PATCH_TICKET_REFUSED):
                    raise
                if is_cancelled_exception(e) and workflow.patched(PATCH_CANCELLED):
                    raise  # cancelled while opening: no refusal
                s.ticket_failures += 1
                error = str(e.cause or e)[:500]
                workflow.logger.warning("the tracker refused the ticket; trying again later",
                                        extra={"item": s.item.id, "error": error, "failures": s.ticket_failures})
                if s.ticket_failures == 1:
                    await self._notify(f"c{s.cycle}/ticket_refused/{s.tickets_replaced}", "ticket_refused",
                                       self.inp.postmortem_owner, {"error": error, "tracker": s.item.tracker,
                                                                   "retry_every": self.inp.policy.reminder_every})
                await workflow.sleep(self.inp.policy.reminder_every)

    async def _apply_ticket_change(self) -> None:
        """A ticket moved (new key) or deleted on the tracker. A moved ticket is followed under its new key.
        A deleted ticket of an open item is opened again (found by marker if it still exists somewhere, else
        created) and the owner is told: the item is still owed; closing it as won't do is how to drop it."""
        s = self.s
        event, s.ticket_change = s.ticket_change, None
        assert event is not None
        old = s.item.ticket_key
        if event.moved_to:
            s.item.ticket_key = event.moved_to
            if s.item.ticket_url and old:
                s.item.ticket_url = s.item.ticket_url.replace(old, event.moved_to)
            await self._save()
            if event.status != "open":  # the move came with a status change: apply it under the new key
                self._apply_status(event.model_copy(update={"ticket_key": event.moved_to, "moved_to": None}))
            return
        if s.phase != "tracking" or s.item.status != ItemStatus.open:
            workflow.logger.warning("ticket deleted after the item was done; nothing left to track",
                                    extra={"ticket": old})
            return
        s.tickets_replaced += 1
        ticket = await self._open_ticket()
        s.item.ticket_key, s.item.ticket_url = ticket.key, ticket.url
        await self._save()
        if ticket.key != old:
            await self._notify(f"c{s.cycle}/ticket_recreated/{s.tickets_replaced}", "ticket_recreated", "owner",
                               {"old_ticket_key": old})

    async def _close_ticket(self) -> None:
        """The item was completed in closeloop: close its ticket too, so the tracker tells the same story (and a
        later reopen on the tracker is a real one). A ticket that cannot be closed is reported, not fatal."""
        s = self.s
        s.completed_here = False
        try:
            await call(TicketActivities.close_ticket, s.item, EXTERNAL)
        except ActivityError as e:
            if is_cancelled_exception(e) and workflow.patched(PATCH_CANCELLED):
                raise
            workflow.logger.warning("the ticket could not be closed; the item stays done",
                                    extra={"ticket": s.item.ticket_key, "error": str(e.cause or e)})

    async def _ask_reason(self) -> None:
        """Ask the owner why the item is not being done; without an answer by the deadline, it closes
        as won't do all the same and the owner's manager is told."""
        s, policy = self.s, self.inp.policy
        if s.reason_due is None:
            s.reason_due = workflow.now() + policy.verdict_timeout
            await self._save()
            await self._notify(f"c{s.cycle}/wont_do_reason", "wont_do_reason_request", "owner",
                               {"resolution": s.item.verdict_note, "reason_due": s.reason_due})
        # A reopening that arrived while the request went out has cleared reason_due: nothing to wait for.
        deadline = s.reason_due
        answered = deadline is not None and await wait_until(
            lambda: s.wont_do_reason is not None or s.item.status != ItemStatus.wont_do, deadline)
        if s.item.status != ItemStatus.wont_do:
            await self._save()  # reopened: the handler moved it back to tracking
            return
        s.phase, s.reason_needed = "closed", False
        closed_as = f" (closed as {s.item.verdict_note})" if s.item.verdict_note else ""
        if answered and s.wont_do_reason is not None:
            s.item.verdict_note = f"{s.wont_do_reason.reason}{closed_as}"
            await self._save()
            return
        s.item.verdict_note = f"won't do{closed_as}; no reason given by the deadline"
        await self._save()
        await self._notify(f"c{s.cycle}/wont_do_unexplained", "wont_do_unexplained", "manager",
                           {"resolution": closed_as.strip(" ()")})

    async def _cancelled(self) -> None:
        """Close the item after a cancellation. An open item (or one awaiting its won't-do reason) becomes
        `cancelled` and its ticket gets a comment, and is closed when `[tickets] close_on_cancel` says so; a done
        item keeps its status (its effectiveness review is what stops). A ticket that cannot be told is logged."""
        s = self.s
        if s.phase == "closed":
            return
        was_open = s.item.status == ItemStatus.open or s.phase == "awaiting_reason"
        if was_open:
            s.item.status, s.item.verdict_note = ItemStatus.cancelled, "cancelled with its postmortem"
        s.phase = "closed"
        if s.chase:
            s.chase.stalled = False
        await self._save()
        if was_open and s.item.ticket_key:
            try:
                await call(TicketActivities.cancel_ticket,
                           CancelTicketInput(item=s.item, reason="its postmortem was cancelled"), EXTERNAL)
            except ActivityError as e:
                workflow.logger.warning("the ticket of a cancelled item could not be told",
                                        extra={"ticket": s.item.ticket_key, "error": str(e.cause or e)[:500]})

    async def _check_recurrence(self) -> None:
        s, policy = self.s, self.inp.policy
        assert s.item.completed_at is not None
        now = workflow.now()
        since = max(s.item.completed_at, now - policy.recurrence_window)
        s.item.recurrences = await call(
            TicketActivities.find_recurrences, RecurrenceInput(incident=self.inp.incident, since=since, until=now),
            STORE,
        )
        s.phase = "awaiting_verdict"
        s.verdict_due = now + policy.verdict_timeout
        await self._save()
        await self._notify(f"c{s.cycle}/verdict_request", "verdict_request", "owner",
                           {"recurrences": s.item.recurrences, "due": s.verdict_due,
                            "completed_at": s.item.completed_at})

    async def _conclude(self) -> None:
        s = self.s
        said = s.owner_verdict
        if s.item.recurrences:
            s.item.verdict = Verdict.ineffective
            s.item.verdict_note = (f"recurred: {', '.join(s.item.recurrences)}"
                                   + (f"; owner said: {said.note or ('effective' if said.effective else 'ineffective')}"
                                      if said else ""))
        elif said:
            s.item.verdict = Verdict.effective if said.effective else Verdict.ineffective
            s.item.verdict_note = said.note
        else:
            s.item.verdict = Verdict.unknown
            s.item.verdict_note = "no verdict from the owner before the timeout; no recurrence found"
        s.phase = "closed"
        await self._save()
        if s.item.verdict == Verdict.ineffective:
            targets = list(dict.fromkeys([*ESCALATE_INEFFECTIVE_TO, self.inp.postmortem_owner]))
            for target in targets:
                await self._notify(f"c{s.cycle}/ineffective/{target}", "ineffective", target,
                                   {"recurrences": s.item.recurrences, "note": s.item.verdict_note})

    async def _continue_as_new(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(self.inp.model_copy(update={"resume": self.s}))

    # ------------------------------------------------------------------ bookkeeping

    def _upsert_search_attributes(self) -> None:
        s = self.s
        workflow.upsert_search_attributes([
            sa.STAGE.value_set(f"item_{s.phase}"),
            sa.STAGE_DUE.value_set(s.item.due_at),
            sa.OWNER.value_set(sa.keyword(s.item.owner)),
            sa.SEVERITY.value_set(sa.keyword(self.inp.incident.severity)),
            sa.SERVICE.value_set(sa.keyword_list(self.inp.incident.services)),
            sa.STALLED.value_set(bool(s.chase and s.chase.stalled and s.phase == "tracking")),
        ])

    async def _save(self) -> None:
        self._upsert_search_attributes()
        await call(RecordActivities.save_action_item, self.s.item, STORE)
        parent = workflow.info().parent
        if parent:
            parent_handle = workflow.get_external_workflow_handle(parent.workflow_id)
            await parent_handle.signal(contract.ITEM_UPDATED.name, self.s.item)

    async def _notify(self, key: str, kind: str, target: str, context: dict[str, Any], *,
                      still_wanted: Callable[[], bool] | None = None) -> str | None:
        item = self.s.item
        return await send(
            key=f"{item.id}/{key}", kind=kind, target=target, relative_to=item.owner, still_wanted=still_wanted,
            postmortem_id=item.postmortem_id, item_id=item.id, tracker=item.tracker, ticket_key=item.ticket_key,
            context={"item_title": item.title, "incident_title": self.inp.incident.title, "priority": item.priority,
                     "due": item.due_at, "ticket_key": item.ticket_key, "ticket_url": item.ticket_url,
                     "owner": item.owner, **context},
        )

    # ------------------------------------------------------------------ queries, updates, signals

    @workflow.query(name=contract.ITEM_STATE.name)
    def state(self) -> ActionItemState:
        return self.s

    @workflow.signal(name=contract.TICKET_STATUS.name)
    def ticket_status(self, event: TicketStatusEvent) -> None:
        """A status change seen on the tracker (webhook or reconciliation sweep)."""
        s = self.s
        s.sync_events += 1
        if event.ticket_key != s.item.ticket_key:
            workflow.logger.warning("status for another ticket ignored", extra={"ticket": event.ticket_key})
            return
        moved = bool(event.moved_to) and event.moved_to != s.item.ticket_key
        if (moved or event.status == "deleted") and workflow.patched(PATCH_TICKET_CHANGES):
            s.ticket_change = event  # the main loop follows the move or opens the ticket again
            return
        self._apply_status(event)

    def _apply_status(self, event: TicketStatusEvent) -> None:
        s = self.s
        if event.status == "done" and s.item.status == ItemStatus.open and s.phase == "tracking":
            s.item.status, s.item.completed_at = ItemStatus.done, workflow.now()
        elif event.status == "wont_do" and s.item.status == ItemStatus.open and s.phase == "tracking":
            s.item.status, s.item.verdict_note = ItemStatus.wont_do, event.reason or event.resolution
            s.reason_needed = not event.reason.strip()
        elif event.status in ("reopened", "open") and s.item.status == ItemStatus.done and s.phase in (
            "waiting_effectiveness", "tracking"
        ):
            self._revoke()
        elif event.status in ("reopened", "open") and s.phase == "awaiting_reason":
            s.reason_needed, s.reason_due, s.item.verdict_note = False, None, ""
            self._revoke()

    def _revoke(self) -> None:
        s = self.s
        s.item.status, s.item.completed_at, s.check_at, s.completed_here = ItemStatus.open, None, None, False
        s.cycle += 1
        self._start_tracking()
        self._upsert_search_attributes()

    @workflow.update(name=contract.COMPLETE_ITEM.name)
    async def complete(self, req: CompleteItem) -> str:
        s = self.s
        s.item.status, s.item.completed_at, s.completed_here = ItemStatus.done, workflow.now(), True
        return f"{s.item.id} done; effectiveness review in {format_duration(self.inp.policy.effectiveness_delay)}"

    @complete.validator
    def _validate_complete(self, req: CompleteItem) -> None:
        s = self.s
        if s.phase != "tracking" or s.item.status != ItemStatus.open:
            raise ValueError(f"the item is not open (status: {s.item.status.value}, phase: {s.phase})")
        if req.by not in (s.item.owner, self.inp.postmortem_owner):
            raise ValueError(f"only {s.item.owner} (item owner) or {self.inp.postmortem_owner} (postmortem owner) "
                             f"can complete this item")

    @workflow.update(name=contract.SNOOZE_ITEM.name)
    async def snooze(self, req: SnoozeRequest) -> str:
        s = self.s
        assert s.chase is not None
        until = workflow.now() + timedelta(hours=req.hours)
        s.chase.snoozed_until = until
        if self.chase:
            self.chase.poke()
        return f"reminders for {s.item.id} snoozed until {until:%Y-%m-%d %H:%M} UTC"

    @snooze.validator
    def _validate_snooze(self, req: SnoozeRequest) -> None:
        s = self.s
        if s.phase != "tracking" or s.item.status != ItemStatus.open or s.chase is None:
            raise ValueError(f"the item is not open (status: {s.item.status.value}, phase: {s.phase})")
        if req.by != s.item.owner:
            raise ValueError(f"only {s.item.owner} (item owner) can snooze its reminders")

    @workflow.update(name=contract.EXPLAIN_WONT_DO.name)
    async def explain_wont_do(self, req: WontDoReason) -> str:
        self.s.wont_do_reason = req
        return "reason recorded; the item is closed as won't do"

    @explain_wont_do.validator
    def _validate_explain(self, req: WontDoReason) -> None:
        s = self.s
        if s.phase != "awaiting_reason" or s.wont_do_reason is not None:
            raise ValueError(f"no reason is asked for this item (status: {s.item.status.value}, phase: {s.phase})")
        if req.by not in (s.item.owner, self.inp.postmortem_owner):
            raise ValueError(f"only {s.item.owner} or {self.inp.postmortem_owner} can give the reason")

    @workflow.update(name=contract.VERDICT.name)
    async def verdict(self, req: VerdictInput) -> str:
        self.s.owner_verdict = req
        return "verdict recorded"

    @verdict.validator
    def _validate_verdict(self, req: VerdictInput) -> None:
        s = self.s
        if s.phase != "awaiting_verdict":
            raise ValueError(f"no effectiveness review is open for this item (phase: {s.phase})")
        if s.owner_verdict is not None:
            raise ValueError("a verdict was already given")
        if req.by not in (s.item.owner, self.inp.postmortem_owner):
            raise ValueError(f"only {s.item.owner} or {self.inp.postmortem_owner} can give the verdict")



