"""Policies: what a postmortem owes, per severity, overridable per service. Pure data."""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from closeloop.durations import Duration

ROLES = ("owner", "manager", "skip_level")
DEFAULT_ITEM_DUE = {
    "P1": timedelta(days=7),
    "P2": timedelta(days=30),
    "P3": timedelta(days=90),
    "P4": timedelta(days=180),
}


# The action-item checks of closeloop.quality (blameless hints are separate: they never block).
ITEM_CHECKS = ("specific", "measurable", "assignable", "realistic", "time_bound")
QualityCheck = Literal["specific", "measurable", "assignable", "realistic", "time_bound", "blameless"]
# Wishes rather than changes. Matched on whole words of an action item's title, case, punctuation and simple word
# endings aside ("Improving the monitoring" matches "improve monitoring"); "..." stands for any words in between.
DEFAULT_VAGUE_PHRASES = (
    "improve communication", "better communication", "communicate better", "communicate more",
    "be more careful", "be careful", "more careful", "pay more attention", "pay attention",
    "be more vigilant", "be vigilant", "be more proactive", "double check",
    "monitor better", "better monitoring", "improve monitoring", "more monitoring",
    "better alerting", "improve alerting", "better alerts", "more alerts",
    "add more tests", "more tests", "more testing", "better testing", "improve testing", "test more",
    "increase test coverage",
    "increase awareness", "raise awareness",
    "improve documentation", "better documentation", "improve docs", "better docs", "update documentation",
    "update docs",
    "improve process", "improve processes", "improve reliability", "improve stability", "improve resilience",
    "improve performance",
    "look into", "investigate further", "further investigation", "dig deeper", "consider", "try to",
    "think about", "ensure that ... is better", "fix the issue", "fix the bug", "fix it", "follow up",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkingHours(_Strict):
    start: time = time(9, 0)
    end: time = time(17, 0)
    days: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], description="0=Monday .. 6=Sunday")

    @model_validator(mode="after")
    def _check(self) -> WorkingHours:
        if self.end <= self.start:
            raise ValueError("working_hours.end must be after working_hours.start")
        if not self.days or any(d < 0 or d > 6 for d in self.days):
            raise ValueError("working_hours.days must list weekdays 0 (Monday) to 6 (Sunday)")
        return self


class MeetingPolicy(_Strict):
    within_business_days: int = Field(default=5, ge=1, le=30)
    duration: Duration = timedelta(minutes=60)
    working_hours: WorkingHours = Field(default_factory=WorkingHours)
    slot_step: Duration = timedelta(minutes=30)


class EscalationStep(_Strict):
    after: Duration = Field(description="how long past the due time this step fires")
    notify: str = Field(description="owner, manager, skip_level, or a person key from the directory")


class QualityPolicy(_Strict):
    """`[policy.quality]`: how closeloop.quality judges a draft's action items. Every field has a default, so a
    policy recorded before these existed (a running lifecycle's state) loads as the defaults."""

    vague_phrases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_VAGUE_PHRASES),
        description="the vague wishes the `specific` check flags; a config's list replaces the defaults (as every "
                    "list of a policy does), so the list a lifecycle resolved stays the one it checks with")
    block: list[str] = Field(
        default_factory=lambda: ["measurable", "assignable", "time_bound"],
        description="the checks whose findings block a submission; the others warn. Blameless hints never block")
    team_owners: bool = Field(default=False, description="a team alias may own an action item (else only a person)")

    @field_validator("vague_phrases")
    @classmethod
    def _phrases(cls, v: list[str]) -> list[str]:
        out: dict[str, None] = {}
        for phrase in v:
            text = " ".join(phrase.split())
            if not any(c.isalnum() for c in text):
                raise ValueError(f"{phrase!r} has no words")
            if len(text) > 200:
                raise ValueError(f"{phrase[:40]!r}... is longer than 200 characters")
            out[text] = None
        if len(out) > 500:
            raise ValueError("at most 500 phrases")
        return list(out)

    @field_validator("block")
    @classmethod
    def _block(cls, v: list[str]) -> list[str]:
        if "blameless" in v:
            raise ValueError("blameless hints never block (they are suggestions for the author)")
        unknown = [c for c in v if c not in ITEM_CHECKS]
        if unknown:
            raise ValueError(f"the checks are {', '.join(ITEM_CHECKS)}, not {unknown}")
        return list(dict.fromkeys(v))


class Policy(_Strict):
    postmortem_required: bool = True
    meeting: MeetingPolicy = Field(default_factory=MeetingPolicy)
    draft_due: Duration = Field(default=timedelta(days=5), description="after drafting starts")
    review_due: Duration = Field(default=timedelta(days=3), description="after review starts")
    reminder_every: Duration = timedelta(days=1)
    escalation: list[EscalationStep] = Field(
        default_factory=lambda: [
            EscalationStep(after=timedelta(0), notify="owner"),
            EscalationStep(after=timedelta(days=2), notify="manager"),
            EscalationStep(after=timedelta(days=5), notify="skip_level"),
        ]
    )
    max_extension: Duration = Field(default=timedelta(days=7), description="total extension allowed")
    reviewers: list[str] = Field(default_factory=list)
    item_due: dict[str, Duration] = Field(default_factory=lambda: dict(DEFAULT_ITEM_DUE))
    item_reminders_before: list[Duration] = Field(
        default_factory=lambda: [timedelta(days=7), timedelta(days=1)],
        description="reminders to the item owner this long before its due date",
    )
    effectiveness_delay: Duration = Field(default=timedelta(days=28), description="after an item is done")
    recurrence_window: Duration = Field(
        default=timedelta(days=28), description="look back this far (never before completion) for recurrences"
    )
    recurrence_lookback: Duration = Field(
        default=timedelta(days=90), description="a new incident of the same kind defeats the action items completed "
        "this long before it started: the new postmortem links to them and their owners are told")
    verdict_timeout: Duration = timedelta(days=7)
    tracker: str = "local"
    publishers: list[str] | None = Field(
        default=None, description="the publishers of this postmortem besides `local` (the files and the web app's "
        "library, always), e.g. [\"confluence\"]; unset: every configured one")
    timeline_sources: list[str] = Field(default_factory=lambda: ["incident", "notes"])
    quality: QualityPolicy = Field(default_factory=QualityPolicy, description="action-item quality checks")

    @field_validator("reminder_every")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("reminder_every must be positive")
        return v

    @field_validator("escalation")
    @classmethod
    def _ordered(cls, steps: list[EscalationStep]) -> list[EscalationStep]:
        afters = [s.after for s in steps]
        if afters != sorted(afters):
            raise ValueError("escalation steps must be in order of 'after'")
        return steps

    @field_validator("item_due")
    @classmethod
    def _priorities(cls, v: dict[str, timedelta]) -> dict[str, timedelta]:
        unknown = set(v) - set(DEFAULT_ITEM_DUE)
        if unknown:
            raise ValueError(f"item_due knows priorities P1..P4, not {sorted(unknown)}")
        return {**DEFAULT_ITEM_DUE, **v}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
