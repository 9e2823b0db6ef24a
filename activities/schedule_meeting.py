"""Find a slot inside everyone's working hours and real availability, and send the invite."""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from closeloop.activities.support import log
from closeloop.directory import Directory
from closeloop.integrations.base import Calendar, SlotTaken
from closeloop.meeting_slots import business_day_window, pick_slot
from closeloop.models import Meeting, Model, Plan


class ScheduleMeetingInput(Model):
    plan: Plan
    not_before: datetime


class MeetingActivities:
    """Booking the review meeting; holds the calendar and the people directory."""

    def __init__(self, calendar: Calendar, people: Directory) -> None:
        self.calendar = calendar
        self.people = people

    @activity.defn(name="schedule_meeting")
    def schedule_meeting(self, inp: ScheduleMeetingInput) -> Meeting | None:
        key = f"{inp.plan.postmortem_id}/meeting"
        existing = self.calendar.find(key)
        if existing:  # a retry after the invite went out: reuse it, never book twice
            return existing
        people = [p for p in (self.people.person(k) for k in inp.plan.attendees) if p]
        policy = inp.plan.policy.meeting
        start, end = business_day_window(inp.not_before, policy.within_business_days, people[0].timezone,
                                         policy.working_hours.days)
        for _attempt in range(10):
            busy = self.calendar.busy(people, start, end)
            slot = pick_slot(attendees=people, busy=busy, not_before=inp.not_before, policy=policy)
            if slot is None:
                log().warning("no common slot within the meeting window", attendees=inp.plan.attendees)
                return None
            meeting = Meeting(title=f"Postmortem review: {inp.plan.incident.title}", start=slot[0], end=slot[1],
                              attendees=[p.key for p in people])
            try:
                meeting.calendar_ref = self.calendar.invite(meeting, people, key)
            except SlotTaken:
                continue  # a concurrent lifecycle booked it between our look and our booking: look again
            log().info("meeting scheduled", start=meeting.start.isoformat(), ref=meeting.calendar_ref)
            return meeting
        raise SlotTaken("slots kept being taken while booking; retrying")
