"""The schedule_meeting activity on the built-in calendar (a real Store): when no slot suits everyone it books the
best one, says who cannot make it, and a retry finds the same booking."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from closeloop.activities.schedule_meeting import MeetingActivities, ScheduleMeetingInput
from closeloop.directory import Directory
from closeloop.integrations.local.calendar import LocalCalendar
from closeloop.models import Incident, Meeting, Person, Plan
from closeloop.policy import MeetingPolicy, Policy
from closeloop.store.store import Store

ANA = Person(key="ana", name="Ana", email="ana@example.com", timezone="Europe/London")
BO = Person(key="bo", name="Bo", email="bo@example.com", timezone="Europe/London")
ERIN = Person(key="erin", name="Erin", email="erin@example.com", timezone="Europe/London")
FRIDAY_EVENING = datetime(2026, 2, 27, 18, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/t.db")
    try:
        yield s
    finally:
        s.close()


def plan() -> Plan:
    incident = Incident(source="api", external_id="INC-7", title="checkout down")
    policy = Policy(meeting=MeetingPolicy(within_business_days=1))
    return Plan(postmortem_id=incident.workflow_id, incident=incident, policy=policy, owner="ana", reviewers=[],
                attendees=["ana", "bo", "erin"], people=["ana", "bo", "erin"])


def schedule(store: Store) -> Meeting | None:
    activities = MeetingActivities(LocalCalendar(store), Directory({p.key: p for p in (ANA, BO, ERIN)}))
    return ActivityEnvironment().run(activities.schedule_meeting,
                                     ScheduleMeetingInput(plan=plan(), not_before=FRIDAY_EVENING))


def test_a_common_slot_leaves_nobody_out(store: Store) -> None:
    meeting = schedule(store)
    assert meeting is not None and meeting.unavailable == []
    assert meeting.start == datetime(2026, 3, 2, 9, tzinfo=UTC)


def test_without_a_common_slot_the_best_one_is_booked_and_who_cannot_come_is_said(store: Store) -> None:
    # Monday is the whole window (one business day after Friday evening): Bo is away all day, Erin until 15:00.
    store.local.add_busy_block("bo", datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC), "away")
    store.local.add_busy_block("erin", datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 2, 15, tzinfo=UTC))
    meeting = schedule(store)
    assert meeting is not None
    assert (meeting.start, meeting.end) == (datetime(2026, 3, 2, 15, tzinfo=UTC), datetime(2026, 3, 2, 16, tzinfo=UTC))
    assert meeting.attendees == ["ana", "bo", "erin"]  # everyone is invited
    assert meeting.unavailable == ["bo"]
    assert meeting.calendar_ref.startswith("local-meeting-")
    # a retry after the booking finds it: the same meeting, booked once
    again = schedule(store)
    assert again == meeting


def test_closeloop_status_says_who_cannot_make_it(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    from closeloop.cli.incidents import _print_state
    from closeloop.models import PostmortemState

    store.local.add_busy_block("bo", datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC), "away")
    state = PostmortemState(plan=plan(), owner="ana", meeting=schedule(store))
    _print_state("postmortem/api/INC-7", state, "running")
    out = capsys.readouterr().out
    assert "with ana, bo, erin" in out
    assert "cannot make it (busy then): bo" in out
