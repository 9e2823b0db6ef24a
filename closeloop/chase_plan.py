"""When to nudge whom: the pure planner behind every reminder/escalation loop.

Workflows call `next_action` with the chase state and act on the answer at the time it names. Pure and
deterministic, so it is safe inside a workflow and easy to test on its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from closeloop.models import ChaseState
from closeloop.policy import EscalationStep

ActionKind = Literal["stall", "escalation", "reminder"]
_ORDER = {"stall": 0, "escalation": 1, "reminder": 2}


@dataclass(frozen=True)
class ChaseAction:
    kind: ActionKind
    at: datetime
    index: int  # which reminder / escalation step this is (stable across continue-as-new)
    target: str | None = None  # escalation target (role or person key)


def reminder_time(chase: ChaseState, every: timedelta, before_due: list[timedelta] | None) -> datetime:
    """The time of reminder number `chase.reminders_sent` (0-based).

    Without `before_due`: every `every` from the start (drafts, reviews). With it: at each offset before
    the due time (largest first), then every `every` after the due time (action items)."""
    n = chase.reminders_sent
    if before_due is None:
        return chase.started_at + (n + 1) * every
    offsets = sorted(before_due, reverse=True)
    if n < len(offsets):
        return chase.due_at - offsets[n]
    return chase.due_at + (n - len(offsets) + 1) * every


def skip_past_reminders(chase: ChaseState, every: timedelta, before_due: list[timedelta] | None) -> ChaseState:
    """Reminders that would fall before the chase started are not sent late: skip them."""
    while before_due is not None and chase.reminders_sent < len(before_due) and (
        reminder_time(chase, every, before_due) <= chase.started_at
    ):
        chase.reminders_sent += 1
    return chase


def next_action(
    chase: ChaseState,
    *,
    every: timedelta,
    steps: list[EscalationStep],
    before_due: list[timedelta] | None = None,
) -> ChaseAction:
    """The next thing to do, earliest first; at equal times: mark stalled, then escalate, then remind."""
    remind_at = reminder_time(chase, every, before_due)
    if chase.snoozed_until is not None and remind_at < chase.snoozed_until:
        remind_at = chase.snoozed_until  # snoozed: the next reminder waits (escalations do not)
    candidates = [ChaseAction("reminder", remind_at, chase.reminders_sent)]
    if not chase.stalled:
        candidates.append(ChaseAction("stall", chase.due_at, 0))
    if chase.escalations_sent < len(steps):
        step = steps[chase.escalations_sent]
        candidates.append(ChaseAction("escalation", chase.due_at + step.after, chase.escalations_sent, step.notify))
    return min(candidates, key=lambda a: (a.at, _ORDER[a.kind]))


def apply(chase: ChaseState, action: ChaseAction, *, every: timedelta | None = None,
          before_due: list[timedelta] | None = None) -> None:
    """Record that `action` was carried out. A reminder that ends a snooze stands for every reminder planned
    before the snooze ended (they are skipped: one reminder, not a burst), given the chase's `every`."""
    if action.kind == "stall":
        chase.stalled = True
    elif action.kind == "escalation":
        chase.escalations_sent += 1
    else:
        chase.reminders_sent += 1
        chase.last_reminder_at = action.at
        if chase.snoozed_until is not None and action.at >= chase.snoozed_until and every is not None:
            while reminder_time(chase, every, before_due) <= chase.snoozed_until:
                chase.reminders_sent += 1
            chase.snoozed_until = None
