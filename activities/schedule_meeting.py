"""Find a slot inside everyone's working hours and real availability, and send the invite. When no slot suits
everyone within the policy's window, book the best one (closeloop.meeting_slots.best_slot: the owner and as many
attendees as possible) and say who cannot make it (`Meeting.unavailable`): the invites always go out."""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from closeloop.activities.support import log
from closeloop.directory import Directory
from closeloop.ids import meeting_key
from closeloop.integrations.base import Calendar, SlotTaken
from closeloop.meeting_slots import best_slot, business_day_window, pick_slot
from closeloop.models import Meeting, Model, Plan


class ScheduleMeetingInput(Model):
    plan: Plan
    not_before: datetime


class MoveMeetingInput(Model):
    plan: Plan
    meeting: Meeting
    owner: str  # the new owner: now an attendee
    not_before: datetime


class CancelMeetingInput(Model):
    postmortem_id: str


class MeetingActivities:
    """Booking the review meeting; holds the calendar and the people directory."""

    def __init__(self, calendar: Calendar, people: Directory) -> None:
        self.calendar = calendar
        self.people = people

    @activity.defn(name="schedule_meeting")
    def schedule_meeting(self, inp: ScheduleMeetingInput) -> Meeting | None:
        """The booked meeting. None only in histories recorded before the best-effort slot (no common slot
        then skipped the meeting); now there is always one, its `unavailable` listing who cannot make it."""
        key = meeting_key(inp.plan.postmortem_id)
        existing = self.calendar.find(key)
        if existing:  # a retry after the booking: reuse it, never book twice; `invite` again is idempotent and
            # makes sure what follows the booking (an e-mailed invitation, closeloop.integrations.email) went out
            invited = [p for p in (self.people.person(k) for k in existing.attendees) if p]
            existing.calendar_ref = self.calendar.invite(existing, invited, key)
            return existing
        people = [p for p in (self.people.person(k) for k in inp.plan.attendees) if p]
        policy = inp.plan.policy.meeting
        start, end = business_day_window(inp.not_before, policy.within_business_days, people[0].timezone,
                                         policy.working_hours.days)
        for _attempt in range(10):
            busy = self.calendar.busy(people, start, end)
            slot = pick_slot(attendees=people, busy=busy, not_before=inp.not_before, policy=policy)
            unavailable: list[str] = []
            if slot is None:
                slot, unavailable = best_slot(attendees=people, busy=busy, not_before=inp.not_before, policy=policy)
                log().warning("no slot suits everyone within the meeting window: booking the best one without "
                              "those who cannot make it", attendees=inp.plan.attendees, unavailable=unavailable,
                              start=slot[0].isoformat())
            meeting = Meeting(title=f"Postmortem review: {inp.plan.incident.title}", start=slot[0], end=slot[1],
                              attendees=[p.key for p in people], unavailable=unavailable)
            try:
                meeting.calendar_ref = self.calendar.invite(meeting, people, key)
            except SlotTaken:
                continue  # a concurrent lifecycle booked it between our look and our booking: look again
            log().info("meeting scheduled", start=meeting.start.isoformat(), ref=meeting.calendar_ref)
            return meeting
        raise SlotTaken("slots kept being taken while booking; retrying")

    @activity.defn(name="move_meeting")
    def move_meeting(self, inp: MoveMeetingInput) -> Meeting:
        """The owner changed: the new owner attends the same meeting (the event updated, SEQUENCE + 1, everyone
        told by their calendar). If they cannot make its slot, the meeting moves to the best slot for everyone
        now. Idempotent: moving to what is booked changes nothing."""
        key = meeting_key(inp.plan.postmortem_id)
        attendees = list(dict.fromkeys([*inp.meeting.attendees, inp.owner]))
        people = [p for p in (self.people.person(k) for k in attendees) if p]
        same = inp.meeting.model_copy(update={"attendees": [p.key for p in people]})
        try:
            same.calendar_ref = self.calendar.reschedule(same, people, key)
            log().info("meeting updated for the new owner", owner=inp.owner, start=same.start.isoformat())
            return same
        except SlotTaken:
            pass
        policy = inp.plan.policy.meeting
        owner = next((p for p in people if p.key == inp.owner), people[0])
        start, end = business_day_window(inp.not_before, policy.within_business_days, owner.timezone,
                                         policy.working_hours.days)
        for _attempt in range(10):
            busy = self.calendar.busy(people, start, end)
            ordered = [owner, *(p for p in people if p.key != owner.key)]  # best_slot favours the first
            slot = pick_slot(attendees=ordered, busy=busy, not_before=inp.not_before, policy=policy)
            unavailable: list[str] = []
            if slot is None:
                slot, unavailable = best_slot(attendees=ordered, busy=busy, not_before=inp.not_before, policy=policy)
            moved = same.model_copy(update={"start": slot[0], "end": slot[1], "unavailable": unavailable})
            try:
                moved.calendar_ref = self.calendar.reschedule(moved, people, key)
            except SlotTaken:
                continue
            log().info("meeting moved for the new owner", owner=inp.owner, start=moved.start.isoformat(),
                       unavailable=unavailable)
            return moved
        raise SlotTaken("slots kept being taken while moving the meeting; retrying")

    @activity.defn(name="cancel_meeting")
    def cancel_meeting(self, inp: CancelMeetingInput) -> bool:
        """The postmortem was cancelled: its meeting is cancelled (attendees told by their calendar, or by an
        e-mailed METHOD:CANCEL). False when nothing was booked (or it was cancelled already)."""
        cancelled = self.calendar.cancel(meeting_key(inp.postmortem_id))
        log().info("meeting cancelled" if cancelled else "no meeting to cancel", postmortem_id=inp.postmortem_id)
        return cancelled
