"""PostmortemWorkflow: one per incident, from resolution to the last action item's effectiveness review.

scheduling -> collecting_timeline -> drafting <-> in_review -> published -> following_up -> closed
(or skipped when the policy needs no postmortem, or cancelled). Deterministic orchestration only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    RetryState,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    import closeloop.contract as contract
    import closeloop.search_attributes as sa
    from closeloop.activities.collect_timeline import CollectTimelineInput, TimelineActivities
    from closeloop.activities.documents import DocumentActivities
    from closeloop.activities.options import BEST_EFFORT, EXTERNAL, STORE
    from closeloop.activities.record_incident import DirectoryActivities, IncidentActivities, RecordIncidentInput
    from closeloop.activities.records import (
        PostmortemRecord,
        RecordActivities,
        RecurrenceLinkInput,
        ReviewInput,
        TimelineInput,
    )
    from closeloop.activities.schedule_meeting import (
        CancelMeetingInput,
        MeetingActivities,
        MoveMeetingInput,
        ScheduleMeetingInput,
    )
    from closeloop.chase_plan import ChaseAction
    from closeloop.contract import action_item_workflow_id
    from closeloop.durations import format_duration
    from closeloop.models import (
        ActionItem,
        ActionItemInput,
        Cancellation,
        ChaseState,
        DraftSubmission,
        ExtensionRequest,
        ItemStatus,
        PostmortemInput,
        PostmortemState,
        PostmortemSummary,
        Reassignment,
        RetryRequest,
        ReviewDecision,
        ReviewRecord,
        ReviewVote,
        SnoozeRequest,
        Stage,
        StageChange,
        Verdict,
    )
    from closeloop.timeline import failure_note, merge
    from closeloop.workflows._common import ChaseRunner, call, send
    from closeloop.workflows.action_item import ActionItemWorkflow

TERMINAL = (Stage.closed, Stage.skipped, Stage.cancelled)
# Patches (workflow.patched) for behaviour added while lifecycles were running; each guards only the new path.
PATCH_CANCEL_REQUEST = "a-cancellation-request-cancels-the-lifecycle-and-its-items"
PATCH_STALL_ON_FAILURE = "a-failure-no-retry-fixes-stalls-the-lifecycle"
PATCH_RECURRENCES = "a-new-draft-links-the-earlier-items-its-incident-defeated"
PATCH_PUBLISHERS = "publish-through-the-postmortems-publishers-and-keep-each-ones-link"
GAVE_UP = (RetryState.NON_RETRYABLE_FAILURE, RetryState.MAXIMUM_ATTEMPTS_REACHED)
MAX_ERROR = 500  # characters of a failure kept in the state and the notification


# Lifecycles started before this patch leave the meeting as booked; later ones update it when the owner changes
# (the new owner attends; the meeting moves if they cannot make it) and cancel it when the postmortem is.
MEETING_FOLLOWS_PATCH = "meeting-follows-changes"

@workflow.defn(name=contract.POSTMORTEM_WORKFLOW)
class PostmortemWorkflow:
    @workflow.init
    def __init__(self, inp: PostmortemInput) -> None:
        self.inp = inp
        self.s: PostmortemState | None = inp.resume
        self.chase: ChaseRunner | None = None
        # Updates whose handler is looking people up in the directory: a second one of the same kind waits its turn.
        self.looking_up: set[str] = set()
        self.item_tasks: list[asyncio.Future[None]] = []  # the action items' children, while following up
        self.retry_request: RetryRequest | None = None  # an operator's go-ahead after a failure (`retry` signal)
        self.failures = 0  # in this run

    # ------------------------------------------------------------------ main line

    @workflow.run
    async def run(self, inp: PostmortemInput) -> PostmortemSummary:
        resumed, failure = inp.resume is not None, None
        while True:
            try:
                if failure is not None:
                    await self._failed(failure)
                    failure = None
                await self._lifecycle(inp, resumed)
                break
            except (asyncio.CancelledError, ActivityError) as e:
                if is_cancelled_exception(e):
                    # A cancellation request (`temporal workflow cancel`, the client's cancel()) ends the lifecycle
                    # as the CANCEL Update does: its open items are cancelled and their tickets told.
                    if (self.s is None or self.s.stage in TERMINAL
                            or not workflow.patched(PATCH_CANCEL_REQUEST)):
                        raise
                    if self.s.cancelled is None:
                        self.s.cancelled = Cancellation(by="an operator",
                                                        reason="the lifecycle's workflow was cancelled")
                    await self._stop_items()
                    await self._cancel()
                    break
                # A step failed in a way no retry fixes (bad data the store refuses, a setting the tracker rejects):
                # stall and tell people, then wait for an operator, rather than fail the lifecycle or retry forever.
                if (not isinstance(e, ActivityError) or e.retry_state not in GAVE_UP
                        or not workflow.patched(PATCH_STALL_ON_FAILURE)):
                    raise
                failure, resumed = e, False
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._summary()

    async def _failed(self, e: ActivityError) -> None:
        """A step failed for good: the lifecycle is marked stalled (CloseloopStalled, so `closeloop stalled` lists
        it), the error is logged and kept in the state, the owner and their manager (before a plan, the incident's
        commander) are told, and it waits for the `retry` signal (then the failed stage runs again) or a
        cancellation. Never a loop: one try per operator action."""
        s, incident, pid = self.s, self.inp.incident, workflow.info().workflow_id
        error = f"{e.activity_type}: {str(e.cause or e)[:MAX_ERROR]}"
        workflow.logger.error("lifecycle stalled: a step failed in a way no retry fixes",
                              extra={"postmortem": pid, "error": error})
        if s is not None:
            s.failure = error
        workflow.upsert_search_attributes([sa.STALLED.value_set(True)])
        targets = [("owner", s.owner), ("manager", s.owner)] if s else \
            [(incident.commander, incident.commander)] if incident.commander else []
        self.failures += 1
        at = workflow.now()
        for target, relative_to in targets:
            try:
                await send(key=f"{pid}/failed/{at:%Y%m%dT%H%M%S}/{self.failures}/{target}", kind="lifecycle_failed",
                           target=target, relative_to=relative_to, postmortem_id=pid,
                           context={"incident_title": incident.title, "incident": incident.key, "error": error,
                                    "stage": s.stage.value if s else "recording the incident"})
            except ActivityError as told:
                if is_cancelled_exception(told):
                    raise
                workflow.logger.error("the failure could not be told", extra={"postmortem": pid, "target": target,
                                                                             "error": str(told.cause or told)[:300]})
        self.retry_request = None
        await workflow.wait_condition(
            lambda: self.retry_request is not None or (self.s is not None and self.s.cancelled is not None))
        if self.s is not None:
            self.s.failure = None
        workflow.upsert_search_attributes([sa.STALLED.value_set(bool(self.s and self.s.stalled))])
        workflow.logger.info("lifecycle resumed after a failure",
                             extra={"postmortem": pid, "by": self.retry_request.by if self.retry_request else ""})

    async def _lifecycle(self, inp: PostmortemInput, resumed: bool) -> None:
        if self.s is None:
            plan = await call(
                IncidentActivities.record_incident,
                RecordIncidentInput(postmortem_id=workflow.info().workflow_id, incident=inp.incident), STORE,
            )
            self.s = PostmortemState(plan=plan, owner=plan.owner)
            if not plan.policy.postmortem_required:
                await self._enter(Stage.skipped)
                return
            await self._enter(Stage.scheduling)
        else:
            if resumed:  # a continue-as-new run, not a retry after a failure
                self.s.runs += 1
            self._upsert_search_attributes()

        while self.s.stage not in TERMINAL:
            if self.s.cancelled:
                await self._cancel()
                break
            stage = self.s.stage
            if stage == Stage.scheduling:
                await self._schedule()
                await self._enter(Stage.collecting_timeline)
            elif stage == Stage.collecting_timeline:
                await self._collect_timeline()
                await self._start_drafting()
            elif stage == Stage.drafting:
                if not await self._drafting():
                    await self._continue_as_new()
                if not self.s.cancelled:
                    await self._start_review()
            elif stage == Stage.in_review:
                if not await self._reviewing():
                    await self._continue_as_new()
                if not self.s.cancelled:
                    await self._review_decided()
            elif stage == Stage.published:
                await self._publish()
                await self._enter(Stage.following_up)
            elif stage == Stage.following_up:
                await self._follow_up()
                if not self.s.cancelled:
                    self.s.closed_at = workflow.now()
                    await self._enter(Stage.closed)

    # ------------------------------------------------------------------ stages

    async def _schedule(self) -> None:
        s = self._state()
        s.meeting = await call(
            MeetingActivities.schedule_meeting, ScheduleMeetingInput(plan=s.plan, not_before=workflow.now()), EXTERNAL,
        )
        if s.meeting:  # None only in histories from before the best-effort slot: there is always a meeting now
            context: dict[str, Any] = {
                "meeting_start": s.meeting.start, "meeting_end": s.meeting.end, "meeting_title": s.meeting.title,
                "calendar_ref": s.meeting.calendar_ref, "attendees": s.meeting.attendees}
            if s.meeting.unavailable:  # a best-effort slot: the invite says who cannot make it
                context["unavailable"] = s.meeting.unavailable
            for person in s.meeting.attendees:
                await self._notify(f"invite/{person}", "invite", person, context)

    async def _collect_timeline(self) -> None:
        s = self._state()
        names = s.plan.timeline_sources
        results = await asyncio.gather(
            *(
                call(TimelineActivities.collect_timeline,
                     CollectTimelineInput(source=name, incident=s.plan.incident), BEST_EFFORT)
                for name in names
            ),
            return_exceptions=True,
        )
        batches = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):  # one failing source must not fail the timeline
                cause = result.cause if isinstance(result, ActivityError) and result.cause else result
                batches.append([failure_note(name, str(cause), workflow.now())])
            else:
                batches.append(result)
        s.timeline = merge(batches)
        await call(RecordActivities.save_timeline, TimelineInput(incident=s.plan.incident, events=s.timeline), STORE)

    async def _start_drafting(self) -> None:
        s = self._state()
        now = workflow.now()
        first = s.draft_ref is None
        if first and workflow.patched(PATCH_RECURRENCES):
            # the feedback loop: the earlier items this incident defeated, shown in the draft and told
            s.recurs_after = await call(RecordActivities.link_recurrences, RecurrenceLinkInput(
                postmortem_id=s.plan.postmortem_id, incident=s.plan.incident,
                within=s.plan.policy.recurrence_lookback, at=now), STORE)
        if s.draft_ref is None:
            s.draft_ref = await call(DocumentActivities.prepare_draft, s, STORE)
        s.draft_chase = ChaseState(started_at=now, due_at=now + s.plan.policy.draft_due)
        await self._enter(Stage.drafting)
        await self._notify(f"draft/{s.review_round}/requested", "draft_requested", s.owner,
                           {"due": s.draft_chase.due_at, "draft_ref": s.draft_ref})
        if first and s.recurs_after:
            await asyncio.gather(*(
                self._notify(f"recurrence/{d.item_id}", "item_recurred", d.owner, {
                    "item_id": d.item_id, "item_title": d.title, "item_postmortem_id": d.postmortem_id,
                    "completed_at": d.completed_at, "matched": d.matched,
                    "verdict": d.verdict.value if d.verdict else None})
                for d in s.recurs_after))

    async def _drafting(self) -> bool:
        s = self._state()
        assert s.draft_chase is not None
        rnd = s.review_round

        async def act(action: ChaseAction) -> None:
            ctx = {"due": s.draft_chase.due_at if s.draft_chase else None, "draft_ref": s.draft_ref}
            if action.kind == "reminder":
                await self._notify(f"draft/{rnd}/reminder/{action.index}", "reminder", s.owner,
                                   {**ctx, "reminder_number": action.index + 1}, still_wanted=owed)
            elif action.kind == "stall":
                await self._set_stalled(True)
            else:
                await self._notify(f"draft/{rnd}/escalation/{action.index}", "escalation", action.target or "owner",
                                   {**ctx, "level": action.index + 1, "owner": s.owner, "stage": "draft"},
                                   relative_to=s.owner, still_wanted=owed)

        def owed() -> bool:
            return not (s.drafts_submitted > s.review_round or s.cancelled is not None)

        return await self._chase(s.draft_chase, act, lambda: not owed())

    async def _chase(self, state: ChaseState, act: Callable[[ChaseAction], Awaitable[None]],
                     done: Callable[[], bool]) -> bool:
        """Run a reminder/escalation chase on the policy's cadence; False means continue-as-new."""
        policy = self._state().plan.policy
        self.chase = ChaseRunner(state, every=policy.reminder_every, steps=policy.escalation)
        finished = await self.chase.run(done, act, self.inp.max_history_events)
        if finished:
            self.chase = None
        return finished

    async def _start_review(self) -> None:
        s = self._state()
        if s.draft_chase and s.draft_chase.stalled:
            await self._set_stalled(False)
        if not self._reviewers():
            await self._enter(Stage.published)
            return
        s.review_round += 1
        now = workflow.now()
        s.review_chase = ChaseState(started_at=now, due_at=now + s.plan.policy.review_due)
        await self._enter(Stage.in_review)
        for reviewer in self._reviewers():
            await self._notify(f"review/{s.review_round}/request/{reviewer}", "review_request", reviewer,
                               {"due": s.review_chase.due_at, "round": s.review_round, "draft_ref": s.draft_ref})

    def _reviewers(self) -> list[str]:
        """Named reviewers, minus the owner (after a reassignment nobody reviews their own postmortem)."""
        s = self._state()
        return [r for r in s.plan.reviewers if r != s.owner]

    def _votes(self) -> list[ReviewRecord]:
        s = self._state()
        return [r for r in s.reviews if r.round == s.review_round]

    def _review_settled(self) -> bool:
        s = self._state()
        votes = self._votes()
        if any(v.decision == ReviewDecision.request_changes for v in votes):
            return True
        return {v.reviewer for v in votes} >= set(self._reviewers()) or s.cancelled is not None

    async def _reviewing(self) -> bool:
        s = self._state()
        assert s.review_chase is not None
        rnd = s.review_round

        async def act(action: ChaseAction) -> None:
            pending = [r for r in self._reviewers() if r not in {v.reviewer for v in self._votes()}]
            ctx = {"due": s.review_chase.due_at if s.review_chase else None, "round": rnd, "draft_ref": s.draft_ref}
            if action.kind == "stall":
                await self._set_stalled(True)
                return
            for reviewer in pending:
                def owed(reviewer: str = reviewer) -> bool:
                    return (s.review_round == rnd and not self._review_settled()
                            and reviewer not in {v.reviewer for v in self._votes()})

                if action.kind == "reminder":
                    await self._notify(f"review/{rnd}/reminder/{action.index}/{reviewer}", "review_reminder",
                                       reviewer, {**ctx, "reminder_number": action.index + 1}, still_wanted=owed)
                else:
                    await self._notify(f"review/{rnd}/escalation/{action.index}/{reviewer}", "escalation",
                                       action.target or "owner",
                                       {**ctx, "level": action.index + 1, "owner": reviewer, "stage": "review"},
                                       relative_to=reviewer, still_wanted=owed)

        return await self._chase(s.review_chase, act, self._review_settled)

    async def _review_decided(self) -> None:
        s = self._state()
        if s.review_chase and s.review_chase.stalled:
            await self._set_stalled(False)
        changes = [v for v in self._votes() if v.decision == ReviewDecision.request_changes]
        if changes:
            await self._notify(f"review/{s.review_round}/changes", "changes_requested", s.owner,
                               {"reviewers": ", ".join(v.reviewer for v in changes),
                                "comments": "\n".join(f"{v.reviewer}: {v.comment}" for v in changes)})
            await self._start_drafting()
        else:
            await self._enter(Stage.published)

    async def _publish(self) -> None:
        s = self._state()
        if workflow.patched(PATCH_PUBLISHERS):
            published = await call(DocumentActivities.publish, s, EXTERNAL)
            s.document_ref, s.document_refs = published.ref, published.refs
        else:
            s.document_ref = await call(DocumentActivities.publish_document, s, EXTERNAL)
        audience = list(dict.fromkeys([s.owner, *s.plan.reviewers, *s.plan.attendees]))
        for person in audience:
            await self._notify(f"published/{person}", "published", person,
                               {"document_ref": s.document_ref, "document_refs": s.document_refs})

    async def _follow_up(self) -> None:
        s = self._state()
        if not s.items and s.draft:
            now = workflow.now()
            policy = s.plan.policy
            s.items = [
                ActionItem(
                    id=action_item_workflow_id(s.plan.postmortem_id, f"item-{n}"),
                    postmortem_id=s.plan.postmortem_id, title=spec.title, description=spec.description,
                    owner=spec.owner, priority=spec.priority, kind=spec.kind, tracker=s.plan.tracker,
                    done_when=spec.done_when,
                    due_at=now + (spec.due_in or policy.item_due[spec.priority]),
                )
                for n, spec in enumerate(s.draft.action_items, start=1)
            ]
        pending = [item for item in s.items
                   if item.verdict is None and item.status not in (ItemStatus.wont_do, ItemStatus.cancelled)]
        tasks = self.item_tasks = [asyncio.ensure_future(self._run_item(item)) for item in pending]
        await workflow.wait_condition(lambda: all(t.done() for t in tasks) or s.cancelled is not None)
        if s.cancelled:
            await self._stop_items()

    async def _stop_items(self) -> None:
        """Cancel the running action items and wait until each has closed (ActionItemWorkflow._cancelled)."""
        for t in self.item_tasks:
            t.cancel()
        await asyncio.gather(*self.item_tasks, return_exceptions=True)

    async def _run_item(self, item: ActionItem) -> None:
        s = self._state()
        try:
            result = await workflow.execute_child_workflow(
                ActionItemWorkflow.run,
                ActionItemInput(item=item, policy=s.plan.policy, incident=s.plan.incident, postmortem_owner=s.owner,
                                max_history_events=self.inp.max_history_events),
                id=item.id,
            )
        except ChildWorkflowError as e:
            workflow.logger.error("action item workflow failed", extra={"item": item.id, "error": str(e)})
            return
        self._replace_item(result)

    def _replace_item(self, item: ActionItem) -> None:
        s = self._state()
        s.items = [item if i.id == item.id else i for i in s.items]

    async def _cancel(self) -> None:
        s = self._state()
        assert s.cancelled is not None
        await self._notify("cancelled", "cancelled", s.owner, {"by": s.cancelled.by, "reason": s.cancelled.reason})
        if s.meeting and s.meeting.start > workflow.now() and workflow.patched(MEETING_FOLLOWS_PATCH):
            await call(MeetingActivities.cancel_meeting, CancelMeetingInput(postmortem_id=s.plan.postmortem_id),
                       EXTERNAL)
        await self._enter(Stage.cancelled)

    async def _continue_as_new(self) -> None:
        s = self._state()
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            PostmortemInput(incident=self.inp.incident, max_history_events=self.inp.max_history_events, resume=s)
        )

    # ------------------------------------------------------------------ bookkeeping

    def _state(self) -> PostmortemState:
        if self.s is None:
            raise ApplicationError("the lifecycle is still starting")
        return self.s

    def _stage_due(self) -> datetime | None:
        s = self._state()
        if s.stage == Stage.drafting and s.draft_chase:
            return s.draft_chase.due_at
        if s.stage == Stage.in_review and s.review_chase:
            return s.review_chase.due_at
        return None

    def _upsert_search_attributes(self) -> None:
        s = self._state()
        due = self._stage_due()
        workflow.upsert_search_attributes([
            sa.STAGE.value_set(s.stage.value),
            sa.STAGE_DUE.value_set(due) if due else sa.STAGE_DUE.value_unset(),
            sa.OWNER.value_set(sa.keyword(s.owner)),
            sa.SEVERITY.value_set(sa.keyword(s.plan.incident.severity)),
            sa.SERVICE.value_set(sa.keyword_list(s.plan.incident.services)),
            sa.STALLED.value_set(s.stalled),
        ])

    async def _save(self) -> None:
        s = self._state()
        self._upsert_search_attributes()
        await call(
            RecordActivities.save_postmortem,
            PostmortemRecord(postmortem_id=s.plan.postmortem_id, incident=s.plan.incident, owner=s.owner,
                             stage=s.stage.value, stalled=s.stalled, stage_due_at=self._stage_due(),
                             at=workflow.now()),
            STORE,
        )

    async def _enter(self, stage: Stage) -> None:
        s = self._state()
        s.stage = stage
        s.stages.append(StageChange(stage=stage, at=workflow.now()))
        await self._save()

    async def _set_stalled(self, stalled: bool) -> None:
        s = self._state()
        chase = s.review_chase if s.stage == Stage.in_review else s.draft_chase
        if chase:
            chase.stalled = stalled
        await self._save()

    async def _notify(self, key: str, kind: str, target: str, context: dict[str, Any], *,
                      relative_to: str | None = None, still_wanted: Callable[[], bool] | None = None) -> str | None:
        s = self._state()
        return await send(
            key=f"{s.plan.postmortem_id}/{key}", kind=kind, target=target, relative_to=relative_to or target,
            postmortem_id=s.plan.postmortem_id, still_wanted=still_wanted,
            context={"incident_title": s.plan.incident.title, "incident": s.plan.incident.key, "owner": s.owner,
                     "severity": s.plan.incident.severity, **context},
        )

    def _summary(self) -> PostmortemSummary:
        s = self._state()
        return PostmortemSummary(
            postmortem_id=s.plan.postmortem_id, incident=s.plan.incident.key, stage=s.stage, owner=s.owner,
            review_rounds=s.review_round, items=s.items,
            effective=sum(1 for i in s.items if i.verdict == Verdict.effective),
            ineffective=sum(1 for i in s.items if i.verdict == Verdict.ineffective),
            document_ref=s.document_ref, closed_at=s.closed_at,
        )

    async def _unknown_people(self, update: str, keys: list[str]) -> list[str]:
        """The keys among `keys` that name nobody in the directory. The plan carries only the people this
        lifecycle involves; anyone else an action names is looked up (DirectoryActivities.lookup_people) and
        remembered in the plan. Runs in an Update's handler: a validator may not do I/O."""
        s = self._state()
        missing = [k for k in dict.fromkeys(keys) if k not in s.plan.people]
        if not missing:
            return []
        self.looking_up.add(update)
        try:
            found = await call(DirectoryActivities.lookup_people, missing, STORE)
        finally:
            self.looking_up.discard(update)
        s.plan.people = sorted({*s.plan.people, *found})
        return [k for k in missing if k not in found]

    def _not_looking_up(self, update: str) -> None:
        if update in self.looking_up:
            raise ValueError("another request of this kind is being checked; try again in a moment")

    # ------------------------------------------------------------------ queries, updates, signals

    @workflow.query(name=contract.POSTMORTEM_STATE.name)
    def state(self) -> PostmortemState | None:
        return self.s

    @workflow.signal(name=contract.RETRY.name)
    def retry(self, req: RetryRequest) -> None:
        """An operator fixed the cause of a failure: the failed stage runs again."""
        self.retry_request = req

    @workflow.signal(name=contract.ITEM_UPDATED.name)
    def item_updated(self, item: ActionItem) -> None:
        """Children report progress so the `state` Query shows every item's status."""
        if self.s:
            self._replace_item(item)

    @workflow.update(name=contract.SUBMIT_DRAFT.name)
    async def submit_draft(self, draft: DraftSubmission) -> str:
        s = self._state()
        unknown = await self._unknown_people("submit_draft", [item.owner for item in draft.action_items])
        for item in draft.action_items:
            if item.owner in unknown:
                raise ApplicationError(f"action item {item.title!r}: unknown owner {item.owner!r}")
        s.draft = draft
        s.drafts_submitted += 1
        return f"draft {s.drafts_submitted} accepted with {len(draft.action_items)} action item(s)"

    @submit_draft.validator
    def _validate_draft(self, draft: DraftSubmission) -> None:
        s = self._state()
        if s.stage != Stage.drafting or s.drafts_submitted > s.review_round:
            raise ValueError(f"not waiting for a draft (stage: {s.stage.value})")
        if draft.by != s.owner:
            raise ValueError(f"only the owner ({s.owner}) can submit the draft, not {draft.by}")
        self._not_looking_up("submit_draft")

    @workflow.update(name=contract.SNOOZE_DRAFT.name)
    async def snooze(self, req: SnoozeRequest) -> str:
        s = self._state()
        assert s.draft_chase is not None
        until = workflow.now() + timedelta(hours=req.hours)
        s.draft_chase.snoozed_until = until
        if self.chase:
            self.chase.poke()
        return f"draft reminders snoozed until {until:%Y-%m-%d %H:%M} UTC (escalations keep to the due date)"

    @snooze.validator
    def _validate_snooze(self, req: SnoozeRequest) -> None:
        s = self._state()
        if s.stage != Stage.drafting or s.draft_chase is None or s.cancelled:
            raise ValueError(f"no draft is being chased (stage: {s.stage.value})")
        if req.by != s.owner:
            raise ValueError(f"only the owner ({s.owner}) can snooze the draft reminders, not {req.by}")

    @workflow.update(name=contract.REQUEST_EXTENSION.name)
    async def request_extension(self, req: ExtensionRequest) -> str:
        s = self._state()
        assert s.draft_chase is not None
        s.draft_chase.due_at += req.extra
        s.extended_by += req.extra
        s.extensions.append(req)
        if s.draft_chase.due_at > workflow.now():
            s.draft_chase.stalled = False
        if self.chase:
            self.chase.poke()
        await self._save()
        return f"draft now due {s.draft_chase.due_at:%Y-%m-%d %H:%M:%S} UTC"

    @request_extension.validator
    def _validate_extension(self, req: ExtensionRequest) -> None:
        s = self._state()
        if s.stage != Stage.drafting or s.draft_chase is None:
            raise ValueError(f"extensions apply to drafting only (stage: {s.stage.value})")
        if req.by != s.owner:
            raise ValueError(f"only the owner ({s.owner}) can request an extension")
        if req.extra <= timedelta(0):
            raise ValueError("the extension must be positive")
        allowed = s.plan.policy.max_extension - s.extended_by
        if req.extra > allowed:
            raise ValueError(
                f"extension of {format_duration(req.extra)} refused: policy allows "
                f"{format_duration(s.plan.policy.max_extension)} in all, {format_duration(allowed)} left"
            )

    @workflow.update(name=contract.REASSIGN_OWNER.name)
    async def reassign_owner(self, req: Reassignment) -> str:
        s = self._state()
        unknown = await self._unknown_people("reassign_owner", [req.new_owner, req.by])
        if unknown:
            raise ApplicationError(f"unknown person {unknown[0]!r}")
        if req.new_owner == s.owner:  # another reassignment got there while the people were looked up
            raise ApplicationError(f"{req.new_owner} already owns this postmortem")
        previous, s.owner = s.owner, req.new_owner
        if self.chase:
            self.chase.poke()
        await self._save()
        if s.meeting and s.meeting.start > workflow.now() and workflow.patched(MEETING_FOLLOWS_PATCH):
            s.meeting = await call(MeetingActivities.move_meeting, MoveMeetingInput(
                plan=s.plan, meeting=s.meeting, owner=req.new_owner, not_before=workflow.now()), EXTERNAL)
        await self._notify(f"reassigned/{len(s.stages)}/{req.new_owner}", "reassigned", req.new_owner,
                           {"previous": previous, "by": req.by, "reason": req.reason})
        return f"owner is now {req.new_owner} (was {previous})"

    @reassign_owner.validator
    def _validate_reassign(self, req: Reassignment) -> None:
        s = self._state()
        if s.stage in TERMINAL:
            raise ValueError(f"the postmortem is {s.stage.value}")
        self._not_looking_up("reassign_owner")
        if req.new_owner == s.owner:
            raise ValueError(f"{req.new_owner} already owns this postmortem")

    @workflow.update(name=contract.REVIEW.name)
    async def review(self, vote: ReviewVote) -> str:
        s = self._state()
        record = ReviewRecord(round=s.review_round, reviewer=vote.reviewer, decision=vote.decision,
                              comment=vote.comment, at=workflow.now())
        s.reviews.append(record)
        await call(RecordActivities.save_review, ReviewInput(postmortem_id=s.plan.postmortem_id, review=record), STORE)
        return f"{vote.decision.value} recorded for round {s.review_round}"

    @review.validator
    def _validate_review(self, vote: ReviewVote) -> None:
        s = self._state()
        if s.stage != Stage.in_review:
            raise ValueError(f"not in review (stage: {s.stage.value})")
        if vote.reviewer not in self._reviewers():
            raise ValueError(f"{vote.reviewer} is not a reviewer of this postmortem ({', '.join(self._reviewers())})")
        if any(v.reviewer == vote.reviewer for v in self._votes()):
            raise ValueError(f"{vote.reviewer} already voted in review round {s.review_round}")
        if vote.decision == ReviewDecision.request_changes and not vote.comment.strip():
            raise ValueError("say which changes: a comment is required")

    @workflow.update(name=contract.CANCEL.name)
    async def cancel(self, req: Cancellation) -> str:
        s = self._state()
        if await self._unknown_people("cancel", [req.by]):
            raise ApplicationError(f"unknown person {req.by!r}")
        if s.cancelled:  # another cancellation got there while the person was looked up
            return "cancellation accepted"
        s.cancelled = req
        if self.chase:
            self.chase.poke()
        return "cancellation accepted"

    @cancel.validator
    def _validate_cancel(self, req: Cancellation) -> None:
        s = self._state()
        if s.stage in TERMINAL or s.cancelled:
            raise ValueError(f"the postmortem is already {s.stage.value}")
        self._not_looking_up("cancel")

