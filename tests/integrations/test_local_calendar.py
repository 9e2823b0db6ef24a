"""LocalCalendar on a real Store (SQLite file): idempotent invites, busy time from meetings and blocks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from closeloop.integrations.base import Interval, SlotTaken
from closeloop.integrations.local.calendar import LocalCalendar
from closeloop.models import Meeting, Person
from closeloop.store.store import Store
from closeloop.store.tables import MeetingRow

UTC = UTC
ANA = Person(key="ana", name="Ana", email="ana@example.com", timezone="Europe/Berlin")
BO = Person(key="bo", name="Bo", email="bo@example.com", timezone="America/New_York")
CY = Person(key="cy", name="Cy", email="cy@example.com")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/t.db")
    try:
        yield s
    finally:
        s.close()


def test_invite_is_idempotent_and_busy_sees_meetings_and_blocks(store: Store) -> None:
    calendar = LocalCalendar(store)
    assert calendar.name == "local"
    meeting = Meeting(title="Postmortem: db outage", start=datetime(2026, 3, 2, 14, tzinfo=UTC),
                      end=datetime(2026, 3, 2, 15, tzinfo=UTC), attendees=["ana", "bo"])

    first = calendar.invite(meeting, [ANA, BO], "postmortem/api/INC-1/meeting")
    again = calendar.invite(meeting, [ANA, BO], "postmortem/api/INC-1/meeting")
    assert first == again
    assert first.startswith("local-meeting-") and first.removeprefix("local-meeting-").isdigit()
    with store.db.session() as s:
        assert s.scalar(select(func.count()).select_from(MeetingRow)) == 1

    store.local.add_busy_block("bo", datetime(2026, 3, 2, 16, tzinfo=UTC), datetime(2026, 3, 2, 17, tzinfo=UTC), "gym")
    store.local.add_busy_block("bo", datetime(2026, 3, 9, 16, tzinfo=UTC), datetime(2026, 3, 9, 17, tzinfo=UTC))

    busy = calendar.busy([ANA, BO, CY], datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
    meeting_iv = Interval(start=datetime(2026, 3, 2, 14, tzinfo=UTC), end=datetime(2026, 3, 2, 15, tzinfo=UTC))
    block_iv = Interval(start=datetime(2026, 3, 2, 16, tzinfo=UTC), end=datetime(2026, 3, 2, 17, tzinfo=UTC))
    assert busy == {"ana": [meeting_iv], "bo": [meeting_iv, block_iv], "cy": []}
    assert all(i.start.tzinfo is not None for ivs in busy.values() for i in ivs)

    # Outside the range nothing is busy. Another lifecycle cannot take the same slot (SlotTaken: pick
    # again), but a different key books a second meeting an hour later.
    assert calendar.busy([ANA], datetime(2026, 3, 3, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)) == {"ana": []}
    with pytest.raises(SlotTaken):
        calendar.invite(meeting, [ANA], "postmortem/api/INC-2/meeting")
    later = meeting.model_copy(update={"start": meeting.end, "end": meeting.end + (meeting.end - meeting.start)})
    other = calendar.invite(later, [ANA], "postmortem/api/INC-2/meeting")
    assert other != first
