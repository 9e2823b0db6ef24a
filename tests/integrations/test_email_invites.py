"""E-mailed iCalendar invitations (closeloop.integrations.email.invites) against a real SMTP server
(tests/standins/smtp.py): what arrives is parsed with `email` and `icalendar`, never through the code under test.
The booking calendar is the built-in one (it reaches nobody), or an in-memory one that reaches some people and
can cancel."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import icalendar
import pytest
from temporalio.testing import ActivityEnvironment

from closeloop.activities.schedule_meeting import MeetingActivities, ScheduleMeetingInput
from closeloop.directory import Directory
from closeloop.integrations.base import Calendar, Interval
from closeloop.integrations.email.channel import EmailChannel
from closeloop.integrations.email.invites import EmailInvites
from closeloop.integrations.email.settings import EmailSettings
from closeloop.integrations.local.calendar import LocalCalendar
from closeloop.integrations.registry import build
from closeloop.models import Incident, Meeting, Person, Plan
from closeloop.policy import MeetingPolicy, Policy
from closeloop.store.store import Store
from tests.standins.smtp import PASSWORD, USER, SmtpServer
from tests.temporal_env import make_config

ANA = Person(key="ana", name="Ana Ortiz", email="ana@example.com", timezone="Europe/London")
BO = Person(key="bo", name="Bo Berg", email="bo@example.com", timezone="Europe/London")
ERIN = Person(key="erin", name="Erin", email="bounce-erin@example.com", timezone="Europe/London")
PEOPLE = {p.key: p for p in (ANA, BO, ERIN)}
PM = "postmortem/api/INC-7"
KEY = f"{PM}/meeting"
UID = hashlib.sha256(KEY.encode()).hexdigest() + "@closeloop"
START, END = datetime(2026, 3, 2, 15, tzinfo=UTC), datetime(2026, 3, 2, 16, tzinfo=UTC)
NOW = datetime(2026, 2, 27, 18, tzinfo=UTC)
MEETING = Meeting(title="Postmortem review: checkout down", start=START, end=END, attendees=["ana", "bo"])


@pytest.fixture
def store(sqlite_store: Store) -> Store:  # tests/conftest.py: one SQLite store
    return sqlite_store


def channel(smtp: SmtpServer) -> EmailChannel:
    return EmailChannel(EmailSettings(host="127.0.0.1", port=smtp.port, security="starttls", username=USER,
                                      from_address="closeloop@example.com", from_name="closeloop",
                                      ca_file=smtp.ca_file, timeout=10), PASSWORD)


def invites(inner: Calendar, smtp: SmtpServer) -> EmailInvites:
    return EmailInvites(inner, channel(smtp), people=PEOPLE, public_url="https://closeloop.example.com",
                        now=lambda: NOW)


def calendar_part(mail: EmailMessage) -> tuple[str, icalendar.Event, icalendar.Calendar]:
    """The method parameter of the text/calendar part, its VEVENT, and the attached .ics (which must agree)."""
    [part] = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    cal = icalendar.Calendar.from_ical(part.get_content())
    [attachment] = [p for p in mail.iter_attachments() if p.get_filename() == "invite.ics"]
    assert attachment.get_content_type() == "application/ics"
    attached = icalendar.Calendar.from_ical(attachment.get_content())
    assert attached.to_ical() == cal.to_ical()
    [event] = cal.walk("VEVENT")
    return str(part.get_param("method")), event, cal


class MemoryCalendar(Calendar):
    """Books in memory; reaches only `reached`; keeps an iCalendar SEQUENCE and can cancel."""

    name = "memory"

    def __init__(self, reached: set[str]) -> None:
        self.reached = reached
        self.events: dict[str, tuple[Meeting, int, bool]] = {}

    def busy(self, people: list[Person], start: datetime, end: datetime) -> dict[str, list[Interval]]:
        return {p.key: [] for p in people}

    def invite(self, meeting: Meeting, people: list[Person], idempotency_key: str) -> str:
        if idempotency_key not in self.events:
            self.events[idempotency_key] = (meeting, 0, True)
        return f"memory:{idempotency_key}"

    def find(self, idempotency_key: str) -> Meeting | None:
        found = self.events.get(idempotency_key)
        return found[0] if found and found[2] else None

    def reaches(self, person: Person) -> bool:
        return person.key in self.reached

    def sequence(self, idempotency_key: str) -> int | None:
        found = self.events.get(idempotency_key)
        return found[1] if found else None

    def cancel(self, idempotency_key: str) -> bool:
        found = self.events.get(idempotency_key)
        if not found or not found[2]:
            return False
        self.events[idempotency_key] = (found[0], found[1] + 1, False)
        return True


def test_an_invitation_is_an_itip_request_with_a_stable_uid(smtp: SmtpServer, store: Store) -> None:
    cal = invites(LocalCalendar(store), smtp)
    ref = cal.invite(MEETING, [ANA, BO], KEY)
    assert ref.startswith("local-meeting-")
    mails = {m["To"].addresses[0].addr_spec: m for m in smtp.messages}
    assert sorted(mails) == ["ana@example.com", "bo@example.com"]  # the built-in calendar reaches nobody
    mail = mails["ana@example.com"]
    assert mail["From"] == "closeloop <closeloop@example.com>"
    assert mail["Subject"].strip() == "Invitation: Postmortem review: checkout down @ 2026-03-02 15:00-16:00 UTC"
    assert mail.get_content_type() == "multipart/mixed"
    assert [p.get_content_type() for p in mail.get_payload()[0].get_payload()] == ["text/plain", "text/calendar"]
    assert "You are invited to the Postmortem review: checkout down." in mail.get_body(("plain",)).get_content()

    method, event, vcal = calendar_part(mail)
    assert method == "REQUEST" and str(vcal["METHOD"]) == "REQUEST"
    assert str(event["UID"]) == UID
    assert int(event["SEQUENCE"]) == 0
    assert event["DTSTART"].dt == START and event["DTEND"].dt == END
    assert event["DTSTART"].dt.utcoffset() == UTC.utcoffset(None)
    assert vcal.to_ical().count(b"DTSTART:20260302T150000Z") == 1  # UTC, no TZID
    assert str(event["SUMMARY"]) == "Postmortem review: checkout down"
    assert "https://closeloop.example.com/postmortems/postmortem/api/INC-7" in str(event["DESCRIPTION"])
    assert str(event["ORGANIZER"]) == "mailto:closeloop@example.com"
    assert event["ORGANIZER"].params["CN"] == "closeloop"
    attendee = event["ATTENDEE"]
    assert str(attendee) == "mailto:ana@example.com"
    assert dict(attendee.params) == {"CN": "Ana Ortiz", "CUTYPE": "INDIVIDUAL", "ROLE": "REQ-PARTICIPANT",
                                     "PARTSTAT": "NEEDS-ACTION", "RSVP": "TRUE"}

    # a retry (the same key): booked once, the same message again (same Message-ID, UID and SEQUENCE)
    first_id = mail["Message-ID"]
    assert cal.invite(MEETING, [ANA, BO], KEY) == ref
    again = [m for m in smtp.messages[2:] if m["To"].addresses[0].addr_spec == "ana@example.com"]
    assert [m["Message-ID"] for m in again] == [first_id]
    assert first_id == channel(smtp).message_id(f"{KEY}/REQUEST/0/ana")
    _, event_again, _ = calendar_part(again[0])
    assert str(event_again["UID"]) == UID and int(event_again["SEQUENCE"]) == 0


def test_only_people_the_calendar_cannot_reach_are_mailed_and_a_cancel_follows(smtp: SmtpServer) -> None:
    inner = MemoryCalendar(reached={"ana"})
    cal = invites(inner, smtp)
    best_effort = MEETING.model_copy(update={"attendees": ["ana", "bo", "erin"], "unavailable": ["bo"]})
    cal.invite(best_effort, [ANA, BO, ERIN], KEY)  # erin's address bounces (550): skipped, not fatal
    [mail] = smtp.messages
    assert mail["To"].addresses[0].addr_spec == "bo@example.com"
    _, event, _ = calendar_part(mail)
    assert event["ATTENDEE"].params["ROLE"] == "OPT-PARTICIPANT"  # bo cannot make the slot
    assert "bo cannot make it" in str(event["DESCRIPTION"])

    assert cal.cancel(KEY) is True
    cancel = smtp.messages[1]
    method, event, vcal = calendar_part(cancel)
    assert method == "CANCEL" and str(vcal["METHOD"]) == "CANCEL"
    assert str(event["STATUS"]) == "CANCELLED"
    assert str(event["UID"]) == UID and int(event["SEQUENCE"]) == 1
    assert cancel["Subject"].strip().startswith("Cancelled: ")
    assert inner.sequence(KEY) == 1 and inner.find(KEY) is None
    assert cal.cancel(KEY) is False and len(smtp.messages) == 2  # nothing left to cancel


def test_the_activity_books_the_best_slot_and_mails_who_cannot_come(smtp: SmtpServer, store: Store) -> None:
    store.local.add_busy_block("bo", datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC), "away")
    incident = Incident(source="api", external_id="INC-7", title="checkout down")
    plan = Plan(postmortem_id=incident.workflow_id, incident=incident,
                policy=Policy(meeting=MeetingPolicy(within_business_days=1)), owner="ana", reviewers=[],
                attendees=["ana", "bo"], people=["ana", "bo"])
    assert plan.postmortem_id == PM
    acts = MeetingActivities(invites(LocalCalendar(store), smtp), Directory(PEOPLE))
    meeting = ActivityEnvironment().run(acts.schedule_meeting, ScheduleMeetingInput(plan=plan, not_before=NOW))
    assert meeting is not None and meeting.unavailable == ["bo"]
    assert sorted(m["To"].addresses[0].addr_spec for m in smtp.messages) == ["ana@example.com", "bo@example.com"]
    # a retry of the activity (its answer lost): the booking is found, the same invitations go out again
    again = ActivityEnvironment().run(acts.schedule_meeting, ScheduleMeetingInput(plan=plan, not_before=NOW))
    assert again == meeting
    ids = [m["Message-ID"] for m in smtp.messages]
    assert len(ids) == 4 and len(set(ids)) == 2
    assert {str(calendar_part(m)[1]["UID"]) for m in smtp.messages} == {UID}


def test_calendar_invites_wrap_the_booking_calendar(tmp_path: Path) -> None:
    section = ('\n[notifiers.email]\nhost = "smtp.example.com"\nfrom_address = "closeloop@example.com"\n'
               'calendar_invites = true\n')
    for name in ("on", "off"):
        (tmp_path / name).mkdir()
    integrations = build(make_config(tmp_path / "on", extra=section))
    try:
        assert isinstance(integrations.calendar, EmailInvites)
        assert isinstance(integrations.calendar.inner, LocalCalendar) and integrations.calendar.name == "local"
    finally:
        integrations.store.close()
    off = build(make_config(tmp_path / "off", extra=section.replace("true", "false")))
    try:
        assert isinstance(off.calendar, LocalCalendar)
    finally:
        off.store.close()
