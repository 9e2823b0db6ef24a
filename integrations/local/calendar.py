"""The built-in calendar: meetings and busy blocks kept in closeloop's own store."""

from __future__ import annotations

from datetime import datetime

from closeloop.integrations.base import Calendar, Interval, SlotTaken
from closeloop.models import Meeting, Person
from closeloop.store.store import Store


class LocalCalendar(Calendar):
    """Busy time is the store's booked meetings plus declared busy blocks; invites book a meeting row."""

    name = "local"

    def __init__(self, store: Store) -> None:
        self.store = store

    def busy(self, people: list[Person], start: datetime, end: datetime) -> dict[str, list[Interval]]:
        """Busy intervals per person key that overlap [start, end), sorted by start."""
        found = self.store.local.busy_intervals([p.key for p in people], start, end)
        return {key: [Interval(start=s, end=e) for s, e in sorted(spans)] for key, spans in found.items()}

    def invite(self, meeting: Meeting, people: list[Person], idempotency_key: str) -> str:
        """Book the meeting once per `idempotency_key`; returns `local-meeting-<id>`. SlotTaken when an attendee
        other than the meeting's `unavailable` ones got busy in the slot meanwhile."""
        attendees = list(dict.fromkeys([*meeting.attendees, *(p.key for p in people)]))
        meeting_id = self.store.local.book_meeting(
            idempotency_key=idempotency_key, title=meeting.title, start=meeting.start, end=meeting.end,
            attendees=attendees, require_free=True, free=[k for k in attendees if k not in meeting.unavailable],
        )
        if meeting_id is None:
            raise SlotTaken(f"{meeting.start.isoformat()} was taken by another meeting meanwhile")
        return f"local-meeting-{meeting_id}"

    def reschedule(self, meeting: Meeting, people: list[Person], idempotency_key: str) -> str:
        """Move the booked meeting to `meeting`'s slot and attendees; SlotTaken when an attendee expected to come
        is busy then; books it when nothing is booked under the key."""
        attendees = list(dict.fromkeys([*meeting.attendees, *(p.key for p in people)]))
        moved = self.store.local.move_meeting(idempotency_key, start=meeting.start, end=meeting.end,
                                              attendees=attendees,
                                              free=[k for k in attendees if k not in meeting.unavailable])
        if moved is None:
            return self.invite(meeting, people, idempotency_key)
        if not moved:
            raise SlotTaken(f"{meeting.start.isoformat()} is taken for one of {', '.join(attendees)}")
        found = self.find(idempotency_key)
        assert found is not None
        return found.calendar_ref

    def cancel(self, idempotency_key: str) -> bool:
        """Remove the booked meeting (its slot is free again); False when nothing is booked under the key."""
        return self.store.local.cancel_meeting(idempotency_key)

    def reaches(self, person: Person) -> bool:
        """Nobody: the meetings stay in closeloop's store, no one's own calendar shows them."""
        return False

    def find(self, idempotency_key: str) -> Meeting | None:
        """The meeting booked under the key; its `unavailable` are the attendees busy in its slot now (the store
        keeps no list of them)."""
        row = self.store.local.meeting_by_key(idempotency_key)
        if row is None:
            return None
        busy = self.store.local.busy_intervals(list(row.attendees), row.start, row.end, except_key=idempotency_key)
        return Meeting(title=row.title, start=row.start, end=row.end, attendees=list(row.attendees),
                       calendar_ref=f"local-meeting-{row.id}", unavailable=[k for k in row.attendees if busy[k]])
