"""CalDAVCalendar against a real CalDAV server: Radicale (a test dependency) started per test on 127.0.0.1, with
htpasswd accounts, and calendars for ana, bo and the organiser olga. What the tests put in and read back goes
through the `caldav` client and `icalendar`, never through the code under test."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import caldav
import icalendar
import pytest

from closeloop.cli.dev import stop_process
from closeloop.config import Config, ConfigError
from closeloop.integrations.base import IntegrationError, Interval, SlotTaken
from closeloop.integrations.caldav.calendar import CalDAVCalendar
from closeloop.integrations.caldav.settings import CalDAVSettings
from closeloop.integrations.local.calendar import LocalCalendar
from closeloop.integrations.registry import build
from closeloop.models import Meeting, Person
from closeloop.secrets import Secrets
from tests.temporal_env import make_config

PASSWORD = "s3cret-Pa55"
ANA = Person(key="ana", name="Ana Ortiz", email="ana@example.com", timezone="Europe/Berlin")
BO = Person(key="bo", name="Bo Berg", email="bo@example.com", timezone="America/New_York")
CY = Person(key="cy", name="Cy", email="cy@example.com")  # no calendar
OLGA = Person(key="olga", name="Olga Organiser", email="olga@example.com")
PEOPLE = {p.key: p for p in (ANA, BO, CY, OLGA)}
KEY = "postmortem/api/INC-7/meeting"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    base: str  # http://127.0.0.1:PORT/
    client: caldav.DAVClient  # the test's own client, as the account `closeloop`

    def calendar(self, path: str) -> caldav.Calendar:
        return caldav.Calendar(client=self.client, url=self.base + path)

    def put(self, path: str, uid: str, body: str) -> None:
        """Store one event (the VEVENT's lines between BEGIN and END) in the calendar at `path`."""
        ics = (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
               f"DTSTAMP:20260101T000000Z\r\n{body.strip()}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
        self.calendar(path).add_event(ics.replace("\r\n", "\n"), increase_seqno=False)

    def read(self, url: str) -> icalendar.Event:
        """The VEVENT at `url`, as the server holds it."""
        text = self.client.request(url).raw
        events = list(icalendar.Calendar.from_ical(text).walk("VEVENT"))
        assert len(events) == 1
        event = events[0]
        assert isinstance(event, icalendar.Event)
        return event

    def count(self, path: str) -> int:
        return len(self.calendar(path).events())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """Radicale on a free port, htpasswd (plain) accounts, any signed-in account may use any calendar."""
    users = tmp_path / "users"
    users.write_text(f"closeloop:{PASSWORD}\n")
    port = _free_port()
    log = (tmp_path / "radicale.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "radicale", "--config", "", "--storage-filesystem-folder", str(tmp_path / "dav"),
         "--server-hosts", f"127.0.0.1:{port}", "--auth-type", "htpasswd",
         "--auth-htpasswd-filename", str(users), "--auth-htpasswd-encryption", "plain", "--auth-delay", "0",
         "--rights-type", "authenticated", "--logging-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"radicale did not start: {(tmp_path / 'radicale.log').read_text()}")
                time.sleep(0.05)
        base = f"http://127.0.0.1:{port}/"
        client = caldav.DAVClient(url=base, username="closeloop", password=PASSWORD, timeout=10,
                                  enable_rfc6764=False)
        for key in ("ana", "bo", "olga"):
            assert client.mkcol(f"{base}{key}/", "").status in (200, 201)
            assert client.mkcalendar(f"{base}{key}/calendar/").status == 201
        yield Server(base=base, client=client)
    finally:
        stop_process(process, 10)
        log.close()


def settings(server: Server, **changes: object) -> CalDAVSettings:
    values: dict[str, object] = {
        "url": server.base, "username": "closeloop", "organizer": "olga",
        "calendars": {"ana": "ana/calendar/", "bo": server.base + "bo/calendar", "olga": "olga/calendar/"},
        "timeout": 5,
    }
    return CalDAVSettings.model_validate({**values, **changes})


def calendar(server: Server, password: str = PASSWORD, **changes: object) -> CalDAVCalendar:
    return CalDAVCalendar(settings(server, **changes), password=password, people=PEOPLE)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def iv(start: datetime, end: datetime) -> Interval:
    return Interval(start=start, end=end)


def meeting(start: datetime, end: datetime, *keys: str) -> Meeting:
    return Meeting(title="Postmortem review: INC-7 checkout down", start=start, end=end,
                   attendees=list(keys or ("ana", "bo")))


def test_busy_expands_recurrences_and_skips_free_cancelled_and_declined_events(server: Server) -> None:
    # ana: a one-off, a weekly meeting (started in January, Mondays 15:00 Berlin) whose 2 March occurrence is in
    # the window, one on Tuesdays that is not, a transparent one, a cancelled one, one she declined
    server.put("ana/calendar/", "one-off", "DTSTART:20260302T090000Z\r\nDTEND:20260302T100000Z\r\nSUMMARY:1:1")
    # (9 March is skipped: EXDATE; 16 March's is moved to 17:00: a RECURRENCE-ID override in the same resource)
    server.put("ana/calendar/", "weekly", "DTSTART;TZID=Europe/Berlin:20260105T150000\r\n"
               "DTEND;TZID=Europe/Berlin:20260105T160000\r\nRRULE:FREQ=WEEKLY\r\n"
               "EXDATE;TZID=Europe/Berlin:20260309T150000\r\nSUMMARY:team sync\r\nEND:VEVENT\r\n"
               "BEGIN:VEVENT\r\nUID:weekly\r\nDTSTAMP:20260101T000000Z\r\n"
               "RECURRENCE-ID;TZID=Europe/Berlin:20260316T150000\r\n"
               "DTSTART;TZID=Europe/Berlin:20260316T170000\r\nDTEND;TZID=Europe/Berlin:20260316T180000\r\n"
               "SUMMARY:team sync (moved)")
    server.put("ana/calendar/", "tuesdays", "DTSTART:20260106T070000Z\r\nDTEND:20260106T080000Z\r\n"
               "RRULE:FREQ=WEEKLY\r\nSUMMARY:not on Mondays")
    server.put("ana/calendar/", "transparent", "DTSTART:20260302T110000Z\r\nDTEND:20260302T120000Z\r\n"
               "TRANSP:TRANSPARENT\r\nSUMMARY:focus time (free)")
    server.put("ana/calendar/", "cancelled", "DTSTART:20260302T120000Z\r\nDTEND:20260302T130000Z\r\n"
               "STATUS:CANCELLED\r\nSUMMARY:called off")
    server.put("ana/calendar/", "declined", "DTSTART:20260302T170000Z\r\nDTEND:20260302T180000Z\r\n"
               "ORGANIZER:mailto:zed@example.com\r\n"
               "ATTENDEE;PARTSTAT=DECLINED:mailto:ana@example.com\r\nSUMMARY:she said no")
    # bo (New York): an all-day event and a floating 08:00, both in his own time zone (EST, UTC-5)
    server.put("bo/calendar/", "all-day", "DTSTART;VALUE=DATE:20260302\r\nDTEND;VALUE=DATE:20260303\r\n"
               "SUMMARY:offsite")
    server.put("bo/calendar/", "floating", "DTSTART:20260302T080000\r\nDTEND:20260302T090000\r\nSUMMARY:gym")
    # ... and a meeting in the organiser's calendar that lists bo as an attendee
    server.put("olga/calendar/", "board", "DTSTART:20260303T100000Z\r\nDTEND:20260303T110000Z\r\n"
               "ORGANIZER:mailto:olga@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:bo@example.com\r\n"
               "SUMMARY:board")

    cal = calendar(server)
    assert cal.name == "caldav"
    busy = cal.busy([ANA, BO, CY], at(2, 0), at(3, 0))
    assert busy == {
        "ana": [iv(at(2, 9), at(2, 10)), iv(at(2, 14), at(2, 15))],
        "bo": [iv(at(2, 5), at(3, 5)), iv(at(2, 13), at(2, 14))],
        "cy": [],
    }
    assert all(i.start.tzinfo is not None and i.start.utcoffset() == UTC.utcoffset(None)
               for ivs in busy.values() for i in ivs)
    # a later occurrence of the weekly meeting (after Europe's DST change: 15:00 CEST is 13:00 UTC), the
    # Tuesday series, and bo's meeting in the organiser's calendar
    assert cal.busy([ANA], at(30, 0), at(31, 0)) == {"ana": [iv(at(30, 13), at(30, 14))]}
    assert cal.busy([ANA], at(9, 0), at(10, 0)) == {"ana": []}
    assert cal.busy([ANA], at(16, 0), at(17, 0)) == {"ana": [iv(at(16, 16), at(16, 17))]}
    assert cal.busy([ANA, BO], at(3, 0), at(4, 0)) == {
        "ana": [iv(at(3, 7), at(3, 8))], "bo": [iv(at(2, 5), at(3, 5)), iv(at(3, 10), at(3, 11))]}

    # a calendar_url template reaches the same calendars: {user} is the e-mail before the @
    templated = calendar(server, calendars={}, calendar_url="{user}/calendar/")
    assert templated.busy([ANA], at(2, 8), at(2, 10)) == {"ana": [iv(at(2, 9), at(2, 10))]}


def test_invite_creates_one_event_with_a_stable_uid_and_attendees(server: Server) -> None:
    cal = calendar(server)
    booked = meeting(at(3, 16), at(3, 17))
    ref = cal.invite(booked, [ANA, BO], KEY)
    uid = hashlib.sha256(KEY.encode()).hexdigest() + "@closeloop"
    assert ref == f"{server.base}olga/calendar/closeloop-{uid.removesuffix('@closeloop')}.ics"

    event = server.read(ref)
    assert str(event["UID"]) == uid
    assert int(event["SEQUENCE"]) == 0
    assert str(event["SUMMARY"]) == booked.title
    assert event["DTSTART"].dt == at(3, 16) and event["DTEND"].dt == at(3, 17)
    assert event["DTSTART"].dt.tzinfo is not None and event["DTSTART"].dt.utcoffset() == UTC.utcoffset(None)
    assert str(event["ORGANIZER"]) == "mailto:olga@example.com"
    assert str(event["X-CLOSELOOP-KEY"]) == KEY
    attendees = {str(a): dict(a.params) for a in event["ATTENDEE"]}
    assert attendees == {
        "mailto:ana@example.com": {"CN": "Ana Ortiz", "CUTYPE": "INDIVIDUAL", "ROLE": "REQ-PARTICIPANT",
                                   "PARTSTAT": "NEEDS-ACTION", "RSVP": "TRUE"},
        "mailto:bo@example.com": {"CN": "Bo Berg", "CUTYPE": "INDIVIDUAL", "ROLE": "REQ-PARTICIPANT",
                                  "PARTSTAT": "NEEDS-ACTION", "RSVP": "TRUE"},
    }

    # a retry: the same reference, nothing new on the server; find returns the booking
    assert cal.invite(booked, [ANA, BO], KEY) == ref
    assert calendar(server).invite(booked, [ANA, BO], KEY) == ref  # another worker, same key
    assert server.count("olga/calendar/") == 1
    assert cal.find(KEY) == booked.model_copy(update={"calendar_ref": ref})
    assert cal.find("postmortem/api/INC-8/meeting") is None

    # the booked meeting makes its attendees busy (their own calendars do not have it: Radicale does not
    # schedule), so another lifecycle cannot take the slot
    assert cal.busy([ANA], at(3, 0), at(4, 0)) == {"ana": [iv(at(3, 16), at(3, 17))]}
    with pytest.raises(SlotTaken):
        cal.invite(meeting(at(3, 16, 30), at(3, 17, 30), "ana"), [ANA], "postmortem/api/INC-8/meeting")
    # bo got busy in his own calendar since the slot was picked: SlotTaken, nothing booked
    server.put("bo/calendar/", "dentist", "DTSTART:20260303T180000Z\r\nDTEND:20260303T190000Z\r\nSUMMARY:dentist")
    with pytest.raises(SlotTaken) as taken:
        cal.invite(meeting(at(3, 18, 30), at(3, 19, 30)), [ANA, BO], "postmortem/api/INC-8/meeting")
    assert "bo" in str(taken.value) and "ana" not in str(taken.value)
    assert server.count("olga/calendar/") == 1
    other = cal.invite(meeting(at(3, 19), at(3, 20)), [ANA, BO], "postmortem/api/INC-8/meeting")
    assert other != ref and server.count("olga/calendar/") == 2


def test_a_best_effort_booking_marks_who_cannot_make_it(server: Server) -> None:
    cal = calendar(server)
    server.put("bo/calendar/", "offsite", "DTSTART:20260303T150000Z\r\nDTEND:20260303T180000Z\r\nSUMMARY:offsite")
    booked = meeting(at(3, 16), at(3, 17)).model_copy(update={"unavailable": ["bo"]})
    ref = cal.invite(booked, [ANA, BO], KEY)  # bo is busy, but he is not expected: no SlotTaken
    event = server.read(ref)
    roles = {str(a): a.params["ROLE"] for a in event["ATTENDEE"]}
    assert roles == {"mailto:ana@example.com": "REQ-PARTICIPANT", "mailto:bo@example.com": "OPT-PARTICIPANT"}
    assert str(event["X-CLOSELOOP-UNAVAILABLE"]) == "bo"
    assert cal.find(KEY) == booked.model_copy(update={"calendar_ref": ref})
    # ana, who is expected, busy in a slot: SlotTaken as ever
    server.put("ana/calendar/", "dentist", "DTSTART:20260304T160000Z\r\nDTEND:20260304T170000Z\r\nSUMMARY:x")
    with pytest.raises(SlotTaken):
        cal.invite(meeting(at(4, 16), at(4, 17)).model_copy(update={"unavailable": ["bo"]}), [ANA, BO],
                   "postmortem/api/INC-8/meeting")


def test_reschedule_moves_the_same_event_and_bumps_sequence_once(server: Server) -> None:
    cal = calendar(server)
    ref = cal.invite(meeting(at(3, 16), at(3, 17)), [ANA, BO], KEY)
    uid = str(server.read(ref)["UID"])

    moved = meeting(at(4, 10), at(4, 11), "ana", "bo", "cy")
    assert cal.reschedule(moved, [ANA, BO, CY], KEY) == ref
    event = server.read(ref)
    assert str(event["UID"]) == uid
    assert int(event["SEQUENCE"]) == 1
    assert event["DTSTART"].dt == at(4, 10) and event["DTEND"].dt == at(4, 11)
    assert {str(a) for a in event["ATTENDEE"]} == {"mailto:ana@example.com", "mailto:bo@example.com",
                                                   "mailto:cy@example.com"}
    stamp = event["DTSTAMP"].dt
    assert stamp > datetime(2026, 1, 1, tzinfo=UTC)
    assert cal.find(KEY) == moved.model_copy(update={"calendar_ref": ref})
    assert server.count("olga/calendar/") == 1

    # the same again changes nothing: no new SEQUENCE, the event is as it was
    assert cal.reschedule(moved, [ANA, BO, CY], KEY) == ref
    again = server.read(ref)
    assert int(again["SEQUENCE"]) == 1 and again["DTSTAMP"].dt == stamp
    # the old slot is free again, the new one busy
    assert cal.busy([ANA], at(3, 0), at(5, 0)) == {"ana": [iv(at(4, 10), at(4, 11))]}

    # moving into a slot where an attendee is busy elsewhere: SlotTaken, the event stays where it is
    server.put("ana/calendar/", "review", "DTSTART:20260305T090000Z\r\nDTEND:20260305T100000Z\r\nSUMMARY:x")
    with pytest.raises(SlotTaken):
        cal.reschedule(meeting(at(5, 9), at(5, 10)), [ANA, BO], KEY)
    assert int(server.read(ref)["SEQUENCE"]) == 1


def test_cancel_keeps_the_event_as_cancelled_once(server: Server) -> None:
    cal = calendar(server)
    assert cal.cancel(KEY) is False  # nothing booked
    booked = meeting(at(3, 16), at(3, 17))
    ref = cal.invite(booked, [ANA, BO], KEY)

    assert cal.cancel(KEY) is True
    event = server.read(ref)
    assert str(event["STATUS"]) == "CANCELLED" and int(event["SEQUENCE"]) == 1
    assert cal.cancel(KEY) is False  # already cancelled
    assert int(server.read(ref)["SEQUENCE"]) == 1
    assert cal.find(KEY) is None
    assert cal.busy([ANA, BO], at(3, 0), at(4, 0)) == {"ana": [], "bo": []}  # the slot is free again

    # booking under the key again revives the same event, its attendees told (SEQUENCE + 1)
    assert cal.invite(booked, [ANA, BO], KEY) == ref
    revived = server.read(ref)
    assert str(revived["STATUS"]) == "CONFIRMED" and int(revived["SEQUENCE"]) == 2
    assert cal.find(KEY) == booked.model_copy(update={"calendar_ref": ref})
    assert server.count("olga/calendar/") == 1


def test_failures_say_whether_a_retry_can_help(server: Server, tmp_path: Path) -> None:
    wrong = calendar(server, password="not-the-password")
    with pytest.raises(IntegrationError) as refused:
        wrong.busy([ANA], at(2, 0), at(3, 0))
    assert refused.value.retryable is False
    message = str(refused.value)
    assert f"{server.base}ana/calendar/" in message and "'closeloop'" in message
    assert "CLOSELOOP_CALDAV_PASSWORD" in message and "\n" not in message
    assert "not-the-password" not in message and PASSWORD not in message
    with pytest.raises(IntegrationError) as refused_find:
        wrong.find(KEY)
    assert refused_find.value.retryable is False and "not-the-password" not in str(refused_find.value)

    missing = calendar(server, calendars={"ana": "nobody/calendar/", "olga": "olga/calendar/"})
    with pytest.raises(IntegrationError) as not_found:
        missing.busy([ANA], at(2, 0), at(3, 0))
    assert not_found.value.retryable is False
    assert str(not_found.value).startswith(f"CalDAV: the calendar {server.base}nobody/calendar/ does not exist")

    down = f"http://127.0.0.1:{_free_port()}/"  # nothing listens there
    unreachable = CalDAVCalendar(settings(server, url=down), password=PASSWORD, people=PEOPLE)
    for call in (lambda: unreachable.busy([ANA], at(2, 0), at(3, 0)),
                 lambda: unreachable.invite(meeting(at(3, 16), at(3, 17)), [ANA], KEY),
                 lambda: unreachable.find(KEY)):
        with pytest.raises(IntegrationError) as no_answer:
            call()
        assert no_answer.value.retryable is True
        assert down in str(no_answer.value) and PASSWORD not in str(no_answer.value)


CALDAV_SECTION = """
[calendars.caldav]
url = "https://dav.example.com/dav/"
username = "closeloop"
organizer = "alice"
calendar_url = "calendars/{email}/personal/"
calendars = { bob = "https://other.example.com/bob/work/" }
"""


def _config(tmp_path: Path, name: str, extra: str = "") -> Config:
    (tmp_path / name).mkdir()
    return make_config(tmp_path / name, extra=extra)


def test_a_caldav_section_makes_it_the_calendar_that_books(tmp_path: Path) -> None:
    config = _config(tmp_path, "caldav", CALDAV_SECTION)
    integrations = build(config, secrets=Secrets({"CLOSELOOP_CALDAV_PASSWORD": "pw"}))
    try:
        assert [c.name for c in integrations.calendars] == ["local", "caldav"]
        chosen = integrations.calendar
        assert isinstance(chosen, CalDAVCalendar)
        assert chosen.organizer_calendar == "https://dav.example.com/dav/calendars/alice@example.com/personal/"
        assert chosen.settings.calendar_for("bob", "bob@example.com") == "https://other.example.com/bob/work/"
    finally:
        integrations.store.close()

    plain = build(_config(tmp_path, "plain"))
    try:
        assert isinstance(plain.calendar, LocalCalendar)
    finally:
        plain.store.close()

    with pytest.raises(ConfigError) as unknown:
        _config(tmp_path, "bad", CALDAV_SECTION.replace('"alice"', '"nobody"'))
    assert "calendars.caldav.organizer: 'nobody' is not a person of the directory" in str(unknown.value)
    with pytest.raises(ConfigError) as field:
        _config(tmp_path, "bad2", CALDAV_SECTION.replace("{email}", "{mail}"))
    assert "calendars.caldav.calendar_url" in str(field.value) and "{mail}" in str(field.value)
    with pytest.raises(ConfigError) as secret:
        _config(tmp_path, "bad3", CALDAV_SECTION.replace("https://dav", "https://me:pw@dav"))
    assert "calendars.caldav.url" in str(secret.value) and "CLOSELOOP_CALDAV_PASSWORD" in str(secret.value)
