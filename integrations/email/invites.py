"""The review meeting as an e-mailed iCalendar invitation (RFC 5545 and iTIP, RFC 5546), for the attendees the
booking calendar cannot reach (`Calendar.reaches`: nobody with the built-in calendar; with CalDAV, the people
without a calendar on the server). On with `[notifiers.email] calendar_invites = true`; sent through that
section's SMTP server.

`EmailInvites` wraps the booking calendar: it books, finds and reads busy times through it, then e-mails
- on `invite` (and again on a retry: the message is the same): METHOD:REQUEST with the calendar's SEQUENCE
  (0 with the built-in calendar);
- on `reschedule`: METHOD:REQUEST with the SEQUENCE the calendar moved the event to;
- on `cancel`: METHOD:CANCEL, STATUS:CANCELLED, SEQUENCE + 1, sent before the calendar cancels (a retry after
  a failed mail sends it again; after the cancellation there is nothing left to say).

Each mail is multipart/mixed: a multipart/alternative of the plain text and the `text/calendar; method=...` part
(what Gmail, Outlook and Apple Mail turn into the Accept / Decline buttons), and the same object as an
`invite.ics` attachment (for clients that only import attachments). The VEVENT's UID is the CalDAV scheme
(`<sha256 of the key>@closeloop`, closeloop.ids.event_uid), its ORGANIZER the sender, one ATTENDEE (the
recipient, RSVP=TRUE;PARTSTAT=NEEDS-ACTION; ROLE=OPT-PARTICIPANT when they cannot make the slot), times in UTC,
the DESCRIPTION links the postmortem (`[web] public_url`). The Message-ID is derived from the key, the
recipient, the method and the SEQUENCE, so a resend after a crash is the same message.

A recipient the SMTP server refuses for good (550) is logged and skipped: the others and the booking stand, and
the `invite` notification still reaches them on their channels. A transient failure (the server is down)
raises a retryable IntegrationError: the activity retries and finds the booking."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Literal

import icalendar
import structlog

from closeloop.ids import event_uid, postmortem_of_meeting
from closeloop.integrations.base import Calendar, IntegrationError, Interval
from closeloop.integrations.email.channel import EmailChannel
from closeloop.links import postmortem_url
from closeloop.models import Meeting, Person

PRODID = "-//closeloop//email invitations//EN"
Method = Literal["REQUEST", "CANCEL"]
log = structlog.get_logger("closeloop.integrations.email")


def invitation(method: Method, meeting: Meeting, person: Person, idempotency_key: str, *, organizer: Address,
               sequence: int, url: str | None, stamp: datetime) -> icalendar.Calendar:
    """The VCALENDAR of one recipient's invitation (REQUEST) or cancellation (CANCEL)."""
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    cal.add("METHOD", method)
    event = icalendar.Event()
    event.add("UID", event_uid(idempotency_key))
    event.add("SEQUENCE", sequence)
    event.add("DTSTAMP", stamp.astimezone(UTC))
    event.add("DTSTART", meeting.start.astimezone(UTC))
    event.add("DTEND", meeting.end.astimezone(UTC))
    event.add("SUMMARY", meeting.title)
    lines = [f"{meeting.title}."]
    if meeting.unavailable:
        lines.append(f"No time suited everyone: {', '.join(meeting.unavailable)} cannot make it; the review goes "
                     f"ahead without them.")
    if url:
        lines.append(f"The postmortem: {url}")
    event.add("DESCRIPTION", "\n".join(lines))
    if url:
        event.add("URL", url)
    event.add("STATUS", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    event.add("TRANSP", "OPAQUE")
    sender = icalendar.vCalAddress(f"mailto:{organizer.addr_spec}")
    sender.params["CN"] = organizer.display_name or organizer.addr_spec
    event.add("ORGANIZER", sender)
    attendee = icalendar.vCalAddress(f"mailto:{person.email}")
    attendee.params.update({"CN": person.name, "CUTYPE": "INDIVIDUAL",
                            "ROLE": "OPT-PARTICIPANT" if person.key in meeting.unavailable else "REQ-PARTICIPANT",
                            "PARTSTAT": "NEEDS-ACTION", "RSVP": "TRUE"})
    event.add("ATTENDEE", attendee)
    cal.add_component(event)
    return cal


class EmailInvites(Calendar):
    """The booking calendar, plus e-mailed invitations for the people it does not reach (module docstring)."""

    def __init__(self, calendar: Calendar, channel: EmailChannel, *, people: dict[str, Person],
                 public_url: str | None = None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.inner = calendar
        self.name = calendar.name
        self.channel = channel
        self.people = people
        self.public_url = public_url
        self.now = now

    # ------------------------------------------------------------------ the booking calendar's own

    def busy(self, people: list[Person], start: datetime, end: datetime) -> dict[str, list[Interval]]:
        return self.inner.busy(people, start, end)

    def find(self, idempotency_key: str) -> Meeting | None:
        return self.inner.find(idempotency_key)

    def reaches(self, person: Person) -> bool:
        return self.inner.reaches(person)

    def sequence(self, idempotency_key: str) -> int | None:
        return self.inner.sequence(idempotency_key)

    # ------------------------------------------------------------------ booking, then mail

    def invite(self, meeting: Meeting, people: list[Person], idempotency_key: str) -> str:
        ref = self.inner.invite(meeting, people, idempotency_key)
        self._mail("REQUEST", meeting, people, idempotency_key, self.inner.sequence(idempotency_key) or 0)
        return ref

    def reschedule(self, meeting: Meeting, people: list[Person], idempotency_key: str) -> str:
        before = self.inner.sequence(idempotency_key)
        ref = self.inner.reschedule(meeting, people, idempotency_key)
        after = self.inner.sequence(idempotency_key)
        self._mail("REQUEST", meeting, people, idempotency_key,
                   after if after is not None else (before or 0) + 1)
        return ref

    def cancel(self, idempotency_key: str) -> bool:
        if type(self.inner).cancel is Calendar.cancel:
            raise NotImplementedError(f"the {self.name} calendar cannot cancel")
        meeting = self.inner.find(idempotency_key)
        if meeting is None:
            return False
        people = [p for p in (self.people.get(k) for k in meeting.attendees) if p]
        self._mail("CANCEL", meeting, people, idempotency_key, (self.inner.sequence(idempotency_key) or 0) + 1)
        return self.inner.cancel(idempotency_key)

    # ------------------------------------------------------------------ the mail

    def compose(self, method: Method, meeting: Meeting, person: Person, idempotency_key: str,
                sequence: int) -> EmailMessage:
        s = self.channel.settings
        sender = Address(display_name=s.from_name, addr_spec=s.from_address)
        postmortem = postmortem_of_meeting(idempotency_key)
        url = postmortem_url(self.public_url, postmortem) if postmortem else None
        ics = invitation(method, meeting, person, idempotency_key, organizer=sender, sequence=sequence, url=url,
                         stamp=self.now()).to_ical()
        when = f"{meeting.start.astimezone(UTC):%Y-%m-%d %H:%M}-{meeting.end.astimezone(UTC):%H:%M} UTC"
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = Address(display_name=person.name, addr_spec=person.email)
        if s.reply_to:
            msg["Reply-To"] = s.reply_to
        msg["Subject"] = f"{'Cancelled: ' if method == 'CANCEL' else 'Invitation: '}{meeting.title} @ {when}"
        msg["Date"] = format_datetime(self.now())
        msg["Message-ID"] = self.channel.message_id(f"{idempotency_key}/{method}/{sequence}/{person.key}")
        if postmortem:
            thread = self.channel.thread_id(postmortem)
            msg["In-Reply-To"] = thread
            msg["References"] = thread
        msg["X-Closeloop-Kind"] = "calendar_invite" if method == "REQUEST" else "calendar_cancel"
        text = [f"Hello {person.name},", "",
                (f"The {meeting.title} is cancelled." if method == "CANCEL"
                 else f"You are invited to the {meeting.title}."),
                f"When: {when}"]
        if meeting.unavailable and method == "REQUEST":
            text.append(f"No time suited everyone: {', '.join(meeting.unavailable)} cannot make it; the review goes "
                        f"ahead without them.")
        if url:
            text.append(f"The postmortem: {url}")
        msg.set_content("\n".join(text) + "\n")
        msg.add_alternative(ics.decode(), subtype="calendar", params={"method": method})
        msg.add_attachment(ics, maintype="application", subtype="ics", filename="invite.ics")
        return msg

    def _mail(self, method: Method, meeting: Meeting, people: list[Person], idempotency_key: str,
              sequence: int) -> None:
        """Mail everyone of `people` (and the meeting's attendees) the booking calendar does not reach."""
        everyone = {p.key: p for p in people}
        for key in meeting.attendees:
            if key not in everyone and key in self.people:
                everyone[key] = self.people[key]
        for person in everyone.values():
            if not person.email or self.inner.reaches(person):
                continue
            msg = self.compose(method, meeting, person, idempotency_key, sequence)
            try:
                self.channel.send(msg, person.email)
            except IntegrationError as e:
                if e.retryable:
                    raise
                log.warning("calendar invitation refused for good: skipped", person=person.key, method=method,
                            error=str(e))
