"""A CalDAV server as closeloop's calendar, through the `caldav` client, `icalendar` and `recurring-ical-events`.

- Busy time of a person: the events of their calendar (`[calendars.caldav] calendars` / `calendar_url`) in the
  window, recurring ones expanded, plus the events of the organiser's calendar that list them as an ATTENDEE
  (a server without implicit scheduling never copies an invitation into the attendee's calendar, and two
  lifecycles booking the same person must still see each other). Transparent (TRANSP:TRANSPARENT), cancelled
  (STATUS:CANCELLED) and declined (their PARTSTAT=DECLINED) events are free. All-day events and floating
  times are taken in the person's own time zone.
- The meeting is one VEVENT in the organiser's calendar whose UID is derived from the idempotency key
  (`<sha256 of the key>@closeloop`), stored at `closeloop-<sha256>.ics`, so a retry finds it by a plain GET.
  It is created with SEQUENCE:0; a reschedule changes it in place with SEQUENCE + 1; a cancel keeps it with
  STATUS:CANCELLED and SEQUENCE + 1, so the attendees' clients (and servers that schedule: RFC 6638) see the
  cancellation rather than an event that silently vanished. Booking again under a cancelled key revives it.
- Failures: no answer, a timeout, 408/429/5xx are retryable IntegrationErrors; 401/403 (wrong account) and a
  configured calendar that does not exist (404) are not, with one line naming the URL (never the password).

Calls are serialised by a lock: the niquests session is shared, and within one worker the look at the slot
and the booking happen as one step (across workers a conflicting booking can still slip between them; the
next look sees it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
from caldav.calendarobjectresource import Event as DAVEvent
from caldav.collection import Calendar as DAVCollection
from caldav.davclient import DAVClient
from caldav.lib import error as dav_error

from closeloop.ids import event_uid as event_uid
from closeloop.integrations.base import Calendar, IntegrationError, Interval, SlotTaken
from closeloop.integrations.caldav.settings import ENV_PASSWORD, CalDAVSettings, without_credentials
from closeloop.models import Meeting, Person

PRODID = "-//closeloop//caldav calendar//EN"
# An icalendar component: its property values are a union of ~30 types that mypy cannot narrow by name.
Component = Any
KEY_PROPERTY = "X-CLOSELOOP-KEY"
# The meeting's attendees as person keys, space-separated (some servers keep only the first of comma-separated
# values of a property they do not know).
ATTENDEES_PROPERTY = "X-CLOSELOOP-ATTENDEES"
# The attendees who cannot make the slot (Meeting.unavailable), person keys space-separated; their ATTENDEE lines
# say ROLE=OPT-PARTICIPANT.
UNAVAILABLE_PROPERTY = "X-CLOSELOOP-UNAVAILABLE"


def _resource_name(uid: str) -> str:
    return f"closeloop-{uid.partition('@')[0]}.ics"


def _utc(value: date | datetime, zone: ZoneInfo) -> datetime:
    """An iCalendar DATE or DATE-TIME as aware UTC: a date is midnight and a floating time is local, in `zone`."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(0))
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _zone(person: Person) -> ZoneInfo:
    try:
        return ZoneInfo(person.timezone)
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def _email(address: Any) -> str:
    return str(address).removeprefix("mailto:").removeprefix("MAILTO:").strip().lower()


def _counts_as_busy(component: Component, email: str | None) -> bool:
    if str(component.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
        return False
    if str(component.get("STATUS", "")).upper() == "CANCELLED":
        return False
    if email:
        for attendee in _attendees(component):
            if _email(attendee) == email and str(attendee.params.get("PARTSTAT", "")).upper() == "DECLINED":
                return False
    return True


def _attendees(component: Component) -> list[Any]:
    value = component.get("ATTENDEE")
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _vevent(resource: icalendar.Calendar) -> Component:
    for component in resource.walk("VEVENT"):
        if "RECURRENCE-ID" not in component:
            return component
    raise IntegrationError("CalDAV: the event closeloop booked holds no VEVENT", retryable=False)


class CalDAVCalendar(Calendar):
    """Busy times and the review meeting on a CalDAV server (module docstring)."""

    name = "caldav"

    def __init__(self, settings: CalDAVSettings, *, password: str, people: Mapping[str, Person]) -> None:
        self.settings = settings
        self.people = dict(people)
        organizer = self.people.get(settings.organizer)
        if organizer is None:
            raise IntegrationError(f"calendars.caldav.organizer: {settings.organizer!r} is not a person of the "
                                   f"directory", retryable=False)
        self.organizer = organizer
        calendar = settings.organizer_calendar or settings.calendar_for(organizer.key, organizer.email)
        if calendar is None:
            raise IntegrationError("calendars.caldav: the organizer has no calendar (set organizer_calendar)",
                                   retryable=False)
        self.organizer_calendar = settings.absolute(calendar)
        self._client = DAVClient(url=settings.url, username=settings.username, password=password or None,
                                 timeout=settings.timeout,  # type: ignore[arg-type]  # seconds: a float works
                                 ssl_verify_cert=settings.verify_tls, enable_rfc6764=False)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ errors

    @contextmanager
    def _talking_to(self, url: str, what: str) -> Iterator[None]:
        """Turn the client's failures into IntegrationErrors naming `url` (never the password)."""
        where = without_credentials(url)
        try:
            yield
        except IntegrationError:
            raise
        except dav_error.AuthorizationError as e:
            raise IntegrationError(
                f"CalDAV: {where} refused user {self.settings.username!r} ({e.status or 'unauthorized'}) while "
                f"{what}: check [calendars.caldav] username, {ENV_PASSWORD} and the account's access to that "
                f"calendar", retryable=False) from None
        except dav_error.NotFoundError:
            raise IntegrationError(f"CalDAV: the calendar {where} does not exist (404) while {what}",
                                   retryable=False) from None
        except dav_error.RateLimitError:
            raise IntegrationError(f"CalDAV: {where} is rate limiting us while {what}", retryable=True) from None
        except dav_error.DAVError as e:
            status = e.status
            retryable = status is None or status >= 500 or status in (408, 429)
            raise IntegrationError(f"CalDAV: {where} answered {status or type(e).__name__} while {what}",
                                   retryable=retryable) from None
        except OSError as e:  # niquests' ConnectionError and Timeout are OSErrors
            raise IntegrationError(f"CalDAV: cannot reach {where} while {what} ({type(e).__name__})",
                                   retryable=True) from None

    # ------------------------------------------------------------------ reading

    def _calendar(self, url: str) -> DAVCollection:
        return DAVCollection(client=self._client, url=url)

    def _occurrences(self, url: str, start: datetime, end: datetime) -> list[Component]:
        """The event occurrences of the calendar at `url` that may overlap [start, end), recurrences expanded
        (a day's margin each side: all-day and floating events are placed in a time zone afterwards)."""
        lo, hi = start - timedelta(days=1), end + timedelta(days=1)
        with self._talking_to(url, "reading busy times"):
            found = cast(list[DAVEvent], self._calendar(url).search(start=lo, end=hi, event=True, expand=False))
            resources = [obj.icalendar_instance for obj in found]
        occurrences: list[Component] = []
        for resource in resources:
            occurrences += recurring_ical_events.of(resource).between(lo, hi)
        return occurrences

    def _busy(self, people: list[Person], start: datetime, end: datetime,
              ignore_uid: str | None = None) -> dict[str, list[Interval]]:
        spans: dict[str, set[tuple[datetime, datetime]]] = {p.key: set() for p in people}

        def add(person: Person, component: Component, email: str | None) -> None:
            if ignore_uid and str(component.get("UID", "")) == ignore_uid:
                return
            if not _counts_as_busy(component, email):
                return
            zone = _zone(person)
            first = component.get("DTSTART")
            if first is None:
                return
            s = _utc(first.dt, zone)
            try:  # DTEND, or DTSTART + DURATION, or RFC 5545's default (a day for a date, else none)
                e = _utc(component.end, zone)
            except ValueError:
                e = s
            if s < end and e > start:
                spans[person.key].add((s, e))

        calendars: dict[str, list[Person]] = {}
        for person in people:
            url = self.settings.calendar_for(person.key, person.email)
            if url is not None:
                calendars.setdefault(url, []).append(person)
        for url, owners in calendars.items():
            for component in self._occurrences(url, start, end):
                for person in owners:
                    add(person, component, _email(person.email))
        # the organiser's calendar: the meetings that list a person as an attendee
        by_email = {_email(p.email): p for p in people if p.email}
        if by_email:
            for component in self._occurrences(self.organizer_calendar, start, end):
                for attendee in _attendees(component):
                    attending = by_email.get(_email(attendee))
                    if attending is not None:
                        add(attending, component, _email(attending.email))
        return {key: [Interval(start=s, end=e) for s, e in sorted(found)] for key, found in spans.items()}

    def busy(self, people: list[Person], start: datetime, end: datetime) -> dict[str, list[Interval]]:
        """Busy intervals per person key that overlap [start, end), sorted, in UTC; [] for people without a
        calendar who attend nothing in the organiser's calendar."""
        with self._lock:
            return self._busy(people, start, end)

    def _event_url(self, idempotency_key: str) -> str:
        return self.organizer_calendar + _resource_name(event_uid(idempotency_key))

    def _load(self, idempotency_key: str) -> DAVEvent | None:
        """The event booked under the key (cancelled or not), or None."""
        url = self._event_url(idempotency_key)
        with self._talking_to(url, "looking up the meeting"):
            try:
                return self._calendar(self.organizer_calendar).event_by_url(url)
            except dav_error.NotFoundError:
                return None

    def _meeting(self, event: DAVEvent) -> Meeting:
        vevent = _vevent(event.icalendar_instance)
        keys = str(vevent.get(ATTENDEES_PROPERTY, ""))
        return Meeting(title=str(vevent.get("SUMMARY", "")), start=_utc(vevent["DTSTART"].dt, ZoneInfo("UTC")),
                       end=_utc(vevent.end, ZoneInfo("UTC")), attendees=keys.split(),
                       calendar_ref=str(event.url), unavailable=str(vevent.get(UNAVAILABLE_PROPERTY, "")).split())

    def reaches(self, person: Person) -> bool:
        """The organiser, and the people with a calendar on the server (`calendars` / `calendar_url`)."""
        return person.key == self.organizer.key or self.settings.calendar_for(person.key, person.email) is not None

    def sequence(self, idempotency_key: str) -> int | None:
        with self._lock:
            event = self._load(idempotency_key)
            return None if event is None else int(_vevent(event.icalendar_instance).get("SEQUENCE", 0))

    def find(self, idempotency_key: str) -> Meeting | None:
        """The meeting booked under the key; None when there is none or it was cancelled."""
        with self._lock:
            event = self._load(idempotency_key)
            if event is None or str(_vevent(event.icalendar_instance).get("STATUS", "")).upper() == "CANCELLED":
                return None
            return self._meeting(event)

    # ------------------------------------------------------------------ writing

    def _attendee_lines(self, people: list[Person],
                        unavailable: list[str] | None = None) -> list[icalendar.vCalAddress]:
        lines = []
        for person in people:
            address = icalendar.vCalAddress(f"mailto:{person.email}")
            role = "OPT-PARTICIPANT" if person.key in (unavailable or []) else "REQ-PARTICIPANT"
            address.params.update({"CN": person.name, "CUTYPE": "INDIVIDUAL", "ROLE": role,
                                   "PARTSTAT": "NEEDS-ACTION", "RSVP": "TRUE"})
            lines.append(address)
        return lines

    def _check_free(self, meeting: Meeting, people: list[Person], uid: str) -> None:
        """SlotTaken when someone expected at the meeting (all but its `unavailable`) is busy in its slot."""
        expected = [p for p in people if p.key not in meeting.unavailable]
        busy = self._busy(expected, meeting.start, meeting.end, ignore_uid=uid)
        taken = sorted(key for key, spans in busy.items() if spans)
        if taken:
            raise SlotTaken(f"{meeting.start.isoformat()} is no longer free for {', '.join(taken)}")

    @staticmethod
    def _attending(meeting: Meeting, people: list[Person]) -> tuple[list[Person], list[str]]:
        unique = list({p.key: p for p in people if p.email}.values())
        keys = list(dict.fromkeys([*meeting.attendees, *(p.key for p in people)]))
        return unique, keys

    def _set_meeting(self, vevent: Component, meeting: Meeting, people: list[Person],
                     keys: list[str]) -> None:
        """Put the meeting's slot, title and attendees into `vevent` (the ATTENDEE lines of people who stay keep
        their answer when the slot is the same)."""
        same_slot = ("DTSTART" in vevent and _utc(vevent["DTSTART"].dt, ZoneInfo("UTC")) == meeting.start
                     and _utc(vevent.end, ZoneInfo("UTC")) == meeting.end)
        before = {_email(a): a for a in _attendees(vevent)} if same_slot else {}
        for name in ("DTSTART", "DTEND", "DURATION", "SUMMARY", "ATTENDEE", ATTENDEES_PROPERTY, UNAVAILABLE_PROPERTY,
                     "STATUS"):
            vevent.pop(name, None)
        vevent.add("DTSTART", meeting.start.astimezone(UTC))
        vevent.add("DTEND", meeting.end.astimezone(UTC))
        vevent.add("SUMMARY", meeting.title)
        vevent.add("STATUS", "CONFIRMED")
        for line in self._attendee_lines(people, meeting.unavailable):
            vevent.add("ATTENDEE", before.get(_email(line), line))
        vevent.add(ATTENDEES_PROPERTY, " ".join(keys))
        if meeting.unavailable:
            vevent.add(UNAVAILABLE_PROPERTY, " ".join(meeting.unavailable))

    def _new_event(self, meeting: Meeting, people: list[Person], keys: list[str], idempotency_key: str,
                   uid: str) -> icalendar.Calendar:
        resource = icalendar.Calendar()
        resource.add("PRODID", PRODID)
        resource.add("VERSION", "2.0")
        vevent = icalendar.Event()
        vevent.add("UID", uid)
        vevent.add("DTSTAMP", datetime.now(UTC))
        vevent.add("SEQUENCE", 0)
        organizer = icalendar.vCalAddress(f"mailto:{self.organizer.email}")
        organizer.params["CN"] = self.organizer.name
        vevent.add("ORGANIZER", organizer)
        self._set_meeting(vevent, meeting, people, keys)
        vevent.add(KEY_PROPERTY, idempotency_key)
        resource.add_component(vevent)
        return resource

    def _save_revision(self, event: DAVEvent, what: str) -> None:
        """Store `event` (its SEQUENCE already set: the client must not bump it again), If-Match its ETag."""
        with self._talking_to(str(event.url), what):
            event.save(increase_seqno=False, only_this_recurrence=False)

    def _revise(self, event: DAVEvent, change: Any, what: str) -> None:
        resource = event.icalendar_instance
        vevent = _vevent(resource)
        change(vevent)
        vevent["SEQUENCE"] = icalendar.vInt(int(vevent.get("SEQUENCE", 0)) + 1)
        vevent.pop("DTSTAMP", None)
        vevent.add("DTSTAMP", datetime.now(UTC))
        event.icalendar_instance = resource
        self._save_revision(event, what)

    def invite(self, meeting: Meeting, people: list[Person], idempotency_key: str) -> str:
        """Create the event once per key in the organiser's calendar; its URL. SlotTaken when an attendee is
        busy in the slot by now. Under a key whose event was cancelled, the event is booked again (SEQUENCE+1)."""
        uid = event_uid(idempotency_key)
        attending, keys = self._attending(meeting, people)
        with self._lock:
            existing = self._load(idempotency_key)
            if existing is not None and self._is_live(existing):
                return str(existing.url)
            self._check_free(meeting, attending, uid)
            if existing is not None:  # cancelled: book it again, the same event
                self._revise(existing, lambda v: self._set_meeting(v, meeting, attending, keys), "re-booking")
                return str(existing.url)
            url = self._event_url(idempotency_key)
            data = self._new_event(meeting, attending, keys, idempotency_key, uid).to_ical().decode()
            event = DAVEvent(client=self._client, url=url, data=data,
                                 parent=self._calendar(self.organizer_calendar))
            with self._talking_to(self.organizer_calendar, "booking the meeting"):
                try:
                    event.save(no_overwrite=True, increase_seqno=False, only_this_recurrence=False)
                except dav_error.ConsistencyError:  # booked under the same key meanwhile (If-None-Match: *)
                    pass
            return url

    @staticmethod
    def _is_live(event: DAVEvent) -> bool:
        return str(_vevent(event.icalendar_instance).get("STATUS", "")).upper() != "CANCELLED"

    def reschedule(self, meeting: Meeting, people: list[Person], idempotency_key: str) -> str:
        """Move the event booked under the key to `meeting`'s slot, title and attendees: SEQUENCE + 1, DTSTAMP
        now. Nothing changes (no new SEQUENCE) when it is booked so already; with nothing booked it books."""
        attending, keys = self._attending(meeting, people)
        uid = event_uid(idempotency_key)
        with self._lock:
            existing = self._load(idempotency_key)
            if existing is None or not self._is_live(existing):
                return self.invite(meeting, people, idempotency_key)
            vevent = _vevent(existing.icalendar_instance)
            current = self._meeting(existing)
            emails = sorted(_email(a) for a in _attendees(vevent))
            if (current.start == meeting.start and current.end == meeting.end and current.title == meeting.title
                    and current.attendees == keys and current.unavailable == meeting.unavailable
                    and emails == sorted(_email(p.email) for p in attending)):
                return str(existing.url)
            self._check_free(meeting, attending, uid)
            self._revise(existing, lambda v: self._set_meeting(v, meeting, attending, keys), "rescheduling")
            return str(existing.url)

    def cancel(self, idempotency_key: str) -> bool:
        """Mark the event STATUS:CANCELLED (SEQUENCE + 1; it stays, so clients show the cancellation). False
        when nothing is booked under the key or it is cancelled already."""
        with self._lock:
            existing = self._load(idempotency_key)
            if existing is None or not self._is_live(existing):
                return False

            def cancelled(vevent: Component) -> None:
                vevent.pop("STATUS", None)
                vevent.add("STATUS", "CANCELLED")

            self._revise(existing, cancelled, "cancelling")
            return True
