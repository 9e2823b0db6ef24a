"""Deterministic helpers the two workflows share: activity calls with their declared options,
notifications, the chase loop and the continue-as-new check. No I/O, no wall clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import closeloop.chase_plan as planner
    from closeloop.activities.notify import DeliveryTimeInput, NotifyActivities, NotifyInput
    from closeloop.activities.options import EXTERNAL, STORE, ActivityOptions
    from closeloop.models import ChaseState
    from closeloop.policy import EscalationStep

S = TypeVar("S")
A = TypeVar("A")
R = TypeVar("R")


@overload
async def call(activity: Callable[[S, A], Awaitable[R]], arg: A, options: ActivityOptions) -> R: ...


@overload
async def call(activity: Callable[[S, A], R], arg: A, options: ActivityOptions) -> R: ...


async def call(activity: Callable[..., Any], arg: Any, options: ActivityOptions) -> Any:
    """Run an activity method (e.g. `RecordActivities.save_review`) with one of the typed option presets."""
    return await workflow.execute_activity_method(
        activity, arg, start_to_close_timeout=options.start_to_close_timeout, retry_policy=options.retry_policy,
        heartbeat_timeout=options.heartbeat_timeout,
    )


# Lifecycles started before this patch send at once; later ones wait for the recipient's working hours.
WORKING_HOURS_PATCH = "notify-working-hours"


async def send(
    *, key: str, kind: str, target: str, relative_to: str, postmortem_id: str, item_id: str | None = None,
    context: dict[str, Any] | None = None, tracker: str | None = None, ticket_key: str | None = None,
    still_wanted: Callable[[], bool] | None = None,
) -> str | None:
    """Notify once (the key makes retries and replays safe). Returns who was notified, or None when nobody
    fills the role, or when `still_wanted()` turned false while the notification waited for the recipient's
    working hours (a reminder for a draft submitted meanwhile is not sent; a deferred one is never dropped
    for any other reason)."""
    if workflow.patched(WORKING_HOURS_PATCH):
        now = workflow.now()
        due = await call(NotifyActivities.delivery_time,
                         DeliveryTimeInput(kind=kind, target=target, relative_to=relative_to, at=now), STORE)
        if due > now:
            if still_wanted is None:
                await workflow.sleep(due - now)
            elif await _wait(lambda: not still_wanted(), due - now):
                return None
    return await call(
        NotifyActivities.notify,
        NotifyInput(
            key=key, kind=kind, target=target, relative_to=relative_to, postmortem_id=postmortem_id,
            item_id=item_id, at=workflow.now(), context=context or {}, tracker=tracker, ticket_key=ticket_key,
        ),
        EXTERNAL,
    )


def history_is_large(max_events: int) -> bool:
    info = workflow.info()
    return info.is_continue_as_new_suggested() or info.get_current_history_length() >= max_events


class ChaseRunner:
    """Runs a reminder/escalation chase until `done()` or until history asks for continue-as-new.

    `on_action(action)` carries out a reminder, stall or escalation; the chase state is updated after it
    returns, so a replay or a continue-as-new resumes exactly where it stood."""

    def __init__(
        self, state: ChaseState, *, every: timedelta, steps: list[EscalationStep],
        before_due: list[timedelta] | None = None,
    ) -> None:
        self.state, self.every, self.steps, self.before_due = state, every, steps, before_due
        self.dirty = False  # set by handlers that move the due date or change people

    def poke(self) -> None:
        self.dirty = True

    async def run(
        self, done: Callable[[], bool], on_action: Callable[[planner.ChaseAction], Awaitable[None]],
        max_history_events: int,
    ) -> bool:
        """True when done; False when the caller should continue-as-new."""
        while not done():
            action = planner.next_action(self.state, every=self.every, steps=self.steps, before_due=self.before_due)
            wait = action.at - workflow.now()
            self.dirty = False
            if wait > timedelta(0):
                fired = not await _wait(lambda: done() or self.dirty, wait)
                if not fired:
                    continue  # done, or the plan changed: look again
            if action.kind == "reminder" and workflow.now() - action.at >= self.every:
                planner.apply(self.state, action, every=self.every, before_due=self.before_due)  # stale: skip
                continue
            await on_action(action)
            planner.apply(self.state, action, every=self.every, before_due=self.before_due)
            if not done() and history_is_large(max_history_events):
                return False
        return True


async def _wait(condition: Callable[[], bool], timeout: timedelta) -> bool:
    """True if the condition became true, False if the timeout passed first."""
    try:
        await workflow.wait_condition(condition, timeout=timeout)
        return True
    except TimeoutError:
        return False


async def wait_until(condition: Callable[[], bool], deadline: datetime) -> bool:
    """Wait for the condition until the deadline; True if it became true."""
    remaining = deadline - workflow.now()
    if condition():
        return True
    if remaining <= timedelta(0):
        return False
    return await _wait(condition, remaining)
