"""GoogleCalendar through the real google-api-python-client and google-auth against the Google Calendar stand-in
(tests/standins/google_calendar.py), whose every answer is checked against the Calendar v3 discovery document that
google-api-python-client ships (tests/standins/discovery.py). The service account's key is a throwaway RSA key:
the stand-in verifies the JWT it signs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from closeloop.integrations.base import IntegrationError, Interval, SlotTaken
from closeloop.integrations.google import GooglePlugin
from closeloop.integrations.google.calendar import GoogleCalendar, GoogleCalendarConfig, GoogleCalendarError, event_id
from closeloop.integrations.google.settings import ENV_SERVICE_ACCOUNT_FILE, ENV_SERVICE_ACCOUNT_JSON
from closeloop.integrations.plugin import PluginContext
from closeloop.integrations.registry import load
from closeloop.models import Meeting, Person
from closeloop.secrets import Secrets
from closeloop.standins.spec import SpecViolation
from tests.standins.discovery import DiscoveryValidator
from tests.standins.fixtures import validated
from tests.standins.google_calendar import SCOPE, GoogleCalendarStandin, calendar_validator

SA_EMAIL = "closeloop@incident-tools.iam.gserviceaccount.com"
ORGANIZER = "postmortems@example.com"
ANA = Person(key="ana", name="Ana Alves", email="ana@example.com", timezone="Europe/Berlin")
BO = Person(key="bo", name="Bo Berg", email="Bo@Example.com", timezone="America/New_York")
CY = Person(key="cy", name="Cy Chen", email="cy@elsewhere.example")  # not a calendar Google knows
DAY = datetime(2026, 3, 2, tzinfo=UTC)
T14, T15, T16 = DAY.replace(hour=14), DAY.replace(hour=15), DAY.replace(hour=16)
KEY = "postmortem/api/INC-1/meeting"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_json(key: rsa.RSAPrivateKey, email: str = SA_EMAIL) -> str:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "incident-tools", "private_key_id": "0f1e2d",
                       "private_key": pem, "client_email": email, "client_id": "1234567890",
                       "token_uri": "https://oauth2.googleapis.com/token"})


@pytest.fixture
def google(rsa_key: rsa.RSAPrivateKey) -> Iterator[GoogleCalendarStandin]:
    with validated(GoogleCalendarStandin, calendar_validator(), must_serve=True) as server:
        server.add_service_account(SA_EMAIL, rsa_key.public_key())
        server.add_calendar(ORGANIZER, writable=True)
        server.add_calendar(ANA.email, busy=[(DAY.replace(hour=9), DAY.replace(hour=10))])
        server.add_calendar(BO.email.lower(), busy=[(DAY.replace(hour=9, minute=30), DAY.replace(hour=11)),
                                                    (DAY.replace(hour=23), DAY + timedelta(days=1, hours=2))])
        yield server


def calendar_for(google: GoogleCalendarStandin, key: rsa.RSAPrivateKey, **overrides: object) -> GoogleCalendar:
    settings: dict[str, object] = {"organizer_calendar": ORGANIZER, "api_endpoint": google.api_endpoint,
                                   "token_uri": google.token_uri, "timeout": 5.0,
                                   "service_account_json": key_json(key), **overrides}
    return GoogleCalendar(GoogleCalendarConfig.model_validate(settings), people={p.key: p for p in (ANA, BO, CY)})


def meeting(start: datetime = T14, end: datetime = T15, attendees: list[str] | None = None) -> Meeting:
    return Meeting(title="Postmortem review: checkout outage", start=start, end=end,
                   attendees=attendees if attendees is not None else ["ana", "bo"])


def test_busy_maps_calendars_back_to_people_and_a_calendar_google_cannot_see_has_none(
        google: GoogleCalendarStandin, rsa_key: rsa.RSAPrivateKey) -> None:
    calendar = calendar_for(google, rsa_key)
    busy = calendar.busy([ANA, BO, CY], DAY, DAY + timedelta(days=1))
    assert busy == {
        "ana": [Interval(start=DAY.replace(hour=9), end=DAY.replace(hour=10))],
        # Bo's e-mail differs in case from his calendar id; the late block is clipped to the window
        "bo": [Interval(start=DAY.replace(hour=9, minute=30), end=DAY.replace(hour=11)),
               Interval(start=DAY.replace(hour=23), end=DAY + timedelta(days=1))],
        "cy": [],  # notFound: no busy information
    }
    assert all(i.start.tzinfo is UTC for spans in busy.values() for i in spans)
    [query] = google.freebusy_queries
    assert query == {"timeMin": "2026-03-02T00:00:00Z", "timeMax": "2026-03-03T00:00:00Z", "timeZone": "UTC",
                     "items": [{"id": "ana@example.com"}, {"id": "bo@example.com"}, {"id": "cy@elsewhere.example"}]}
    # The service account signed in once, for the calendar scope, as itself (no subject)
    [grant] = google.grants
    assert grant["iss"] == SA_EMAIL and grant["scope"] == SCOPE and "sub" not in grant


def test_busy_asks_fifty_calendars_at_a_time(google: GoogleCalendarStandin, rsa_key: rsa.RSAPrivateKey) -> None:
    people = [Person(key=f"p{i}", name=f"P {i}", email=f"p{i}@example.com") for i in range(120)]
    google.add_calendar("p7@example.com", busy=[(T14, T15)])
    busy = calendar_for(google, rsa_key).busy(people, DAY, DAY + timedelta(days=1))
    assert [len(q["items"]) for q in google.freebusy_queries] == [50, 50, 20]
    assert busy["p7"] == [Interval(start=T14, end=T15)] and busy["p119"] == []


def test_invite_books_once_per_key_and_find_reads_it_back(google: GoogleCalendarStandin,
                                                          rsa_key: rsa.RSAPrivateKey) -> None:
    calendar = calendar_for(google, rsa_key)
    assert calendar.find(KEY) is None
    first = calendar.invite(meeting(), [ANA, BO], KEY)
    again = calendar.invite(meeting(), [ANA, BO], KEY)  # a retry after a lost answer
    assert first == again and first.startswith(google.url + "/calendar/event?eid=")
    [event] = google.live_events(ORGANIZER)
    assert event["id"] == event_id(KEY) and len(event["id"]) == 61
    assert [("insert", event["id"], "all")] == google.send_updates
    assert event["summary"] == "Postmortem review: checkout outage"
    assert event["start"] == {"dateTime": "2026-03-02T14:00:00Z", "timeZone": "UTC"}
    assert [(a["email"], a["displayName"], a["responseStatus"]) for a in event["attendees"]] == [
        ("ana@example.com", "Ana Alves", "needsAction"), ("Bo@Example.com", "Bo Berg", "needsAction")]
    assert event["extendedProperties"]["private"]["closeloopKey"] == KEY

    found = calendar.find(KEY)
    assert found == Meeting(title="Postmortem review: checkout outage", start=T14, end=T15, attendees=["ana", "bo"],
                            calendar_ref=first)
    # The meeting now makes its attendees busy, and another key cannot take the slot: pick again
    assert calendar.busy([ANA], T14, T16)["ana"] == [Interval(start=T14, end=T15)]
    with pytest.raises(SlotTaken, match="ana, bo"):
        calendar.invite(meeting(T14 + timedelta(minutes=30), T15 + timedelta(minutes=30)), [ANA, BO],
                        "postmortem/api/INC-2/meeting")
    assert len(google.live_events(ORGANIZER)) == 1
    other = calendar.invite(meeting(T15, T16), [ANA, BO], "postmortem/api/INC-2/meeting")
    assert other != first and len(google.live_events(ORGANIZER)) == 2


def test_an_insert_whose_answer_was_lost_is_found_by_its_id(google: GoogleCalendarStandin,
                                                            rsa_key: rsa.RSAPrivateKey) -> None:
    """Another worker booked the key between our look and our insert: Google answers 409, and that event is it."""
    calendar, racer = calendar_for(google, rsa_key), calendar_for(google, rsa_key)
    ref = racer.invite(meeting(), [ANA, BO], KEY)
    # our look misses it (404), and the free/busy re-check does not see it (shown as free)
    google.fail_next(1, status=404, path="GET /calendar/v3/calendars/{calendarId}/events/{eventId}")
    with google._lock:
        google.events[ORGANIZER][event_id(KEY)]["transparency"] = "transparent"
    assert calendar.invite(meeting(), [ANA, BO], KEY) == ref
    assert google.requests["POST /calendar/v3/calendars/{calendarId}/events"] == 2  # the second was a 409
    assert len(google.live_events(ORGANIZER)) == 1


def test_reschedule_moves_the_same_event_and_changes_nothing_when_already_there(
        google: GoogleCalendarStandin, rsa_key: rsa.RSAPrivateKey) -> None:
    calendar = calendar_for(google, rsa_key)
    ref = calendar.invite(meeting(), [ANA, BO], KEY)
    moved = meeting(T15, T16, ["ana", "cy"])  # a new slot and a reassigned owner
    assert calendar.reschedule(moved, [ANA, CY], KEY) == ref
    assert calendar.reschedule(moved, [ANA, CY], KEY) == ref  # again: no call
    [event] = google.live_events(ORGANIZER)
    assert event["id"] == event_id(KEY) and event["sequence"] == 1
    assert event["start"]["dateTime"] == "2026-03-02T15:00:00Z"
    assert [a["email"] for a in event["attendees"]] == ["ana@example.com", "cy@elsewhere.example"]
    assert google.send_updates == [("insert", event["id"], "all"), ("patch", event["id"], "all")]
    assert calendar.find(KEY) == moved.model_copy(update={"calendar_ref": ref})
    with pytest.raises(GoogleCalendarError, match="no meeting is booked") as info:
        calendar.reschedule(moved, [ANA], "postmortem/api/INC-9/meeting")
    assert not info.value.retryable


def test_cancel_tells_attendees_once_and_the_key_can_book_again(google: GoogleCalendarStandin,
                                                               rsa_key: rsa.RSAPrivateKey) -> None:
    calendar = calendar_for(google, rsa_key)
    assert calendar.cancel(KEY) is False  # nothing booked
    ref = calendar.invite(meeting(), [ANA, BO], KEY)
    assert calendar.cancel(KEY) is True
    assert calendar.cancel(KEY) is False  # Google: 410 deleted
    assert calendar.find(KEY) is None and google.live_events(ORGANIZER) == []
    assert calendar.busy([ANA], T14, T15) == {"ana": []}
    eid = event_id(KEY)
    assert google.send_updates == [("insert", eid, "all"), ("delete", eid, "all")]
    # the cancelled event keeps its id: booking the key again restores it (Google would answer 409 to an insert)
    assert calendar.invite(meeting(T15, T16), [ANA, BO], KEY) == ref
    [event] = google.live_events(ORGANIZER)
    assert event["status"] == "confirmed" and event["start"]["dateTime"] == "2026-03-02T15:00:00Z"
    assert google.send_updates[-1] == ("patch", eid, "all")


def test_a_refused_key_is_not_retried_and_the_error_holds_no_secret(google: GoogleCalendarStandin,
                                                                   rsa_key: rsa.RSAPrivateKey) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # not the one Google knows
    calendar = calendar_for(google, rsa_key, service_account_json=key_json(other_key))
    with pytest.raises(IntegrationError) as info:
        calendar.busy([ANA], DAY, DAY + timedelta(days=1))
    err = info.value
    assert not err.retryable and "\n" not in str(err)
    assert "Invalid JWT Signature" in str(err) and "token endpoint refused" in str(err)
    pem = json.loads(key_json(other_key))["private_key"]
    body = pem.splitlines()[1]
    # nothing of the key in the error, what it was raised from, or the settings' repr
    assert body not in str(err) and body not in repr(err) and err.__cause__ is None and err.__suppress_context__
    assert body not in repr(err.__context__) and body not in repr(calendar.config)
    assert google.requests["POST /calendar/v3/freeBusy"] == 0


def test_subject_is_delegated_and_a_forbidden_calendar_is_one_clear_line(google: GoogleCalendarStandin,
                                                                        rsa_key: rsa.RSAPrivateKey) -> None:
    google.delegated = {"rota-owner@example.com"}
    calendar = calendar_for(google, rsa_key, subject="rota-owner@example.com")
    calendar.busy([ANA], DAY, DAY + timedelta(hours=1))
    assert google.grants[-1]["sub"] == "rota-owner@example.com"

    google.forbidden.add(ORGANIZER)
    with pytest.raises(GoogleCalendarError) as info:
        calendar.find(KEY)
    assert not info.value.retryable and info.value.status == 403
    assert "requiredAccessLevel" in str(info.value) and "acting as rota-owner@example.com" in str(info.value)
    assert "\n" not in str(info.value)

    undelegated = calendar_for(google, rsa_key, subject="someone-else@example.com")
    with pytest.raises(GoogleCalendarError, match="unauthorized_client") as info:
        undelegated.busy([ANA], DAY, DAY + timedelta(hours=1))
    assert not info.value.retryable


def test_an_unknown_organiser_calendar_is_not_retried(google: GoogleCalendarStandin,
                                                      rsa_key: rsa.RSAPrivateKey) -> None:
    calendar = calendar_for(google, rsa_key, organizer_calendar="typo@example.com")
    with pytest.raises(GoogleCalendarError) as info:
        calendar.invite(meeting(), [ANA, BO], KEY)
    assert info.value.status == 404 and not info.value.retryable and "typo@example.com" in str(info.value)


def test_unavailable_throttled_and_slow_are_retryable(google: GoogleCalendarStandin,
                                                      rsa_key: rsa.RSAPrivateKey) -> None:
    calendar = calendar_for(google, rsa_key, timeout=0.5)
    google.fail_next(1, status=503, path="POST /calendar/v3/freeBusy")
    with pytest.raises(GoogleCalendarError) as info:
        calendar.busy([ANA], DAY, DAY + timedelta(days=1))
    assert info.value.retryable and info.value.status == 503

    google.rate_limit_next(retry_after=7)
    with pytest.raises(GoogleCalendarError) as info:
        calendar.find(KEY)
    assert info.value.retryable and info.value.status == 429 and info.value.retry_after == 7

    google.delay_next(1.5, path="POST /calendar/v3/freeBusy")
    with pytest.raises(GoogleCalendarError) as info:
        calendar.busy([ANA], DAY, DAY + timedelta(days=1))
    assert info.value.retryable

    # and then it works again
    assert calendar.busy([ANA], DAY, DAY + timedelta(days=1))["ana"] == [
        Interval(start=DAY.replace(hour=9), end=DAY.replace(hour=10))]


def test_a_missing_or_broken_key_is_one_line_without_its_content(google: GoogleCalendarStandin,
                                                                  rsa_key: rsa.RSAPrivateKey,
                                                                  tmp_path: Path) -> None:
    with pytest.raises(GoogleCalendarError, match=ENV_SERVICE_ACCOUNT_JSON) as info:
        calendar_for(google, rsa_key, service_account_json="").busy([ANA], DAY, DAY + timedelta(hours=1))
    assert not info.value.retryable
    secret_text = '{"type": "authorized_user", "refresh_token": "1//very-secret"}'
    with pytest.raises(GoogleCalendarError, match="is not a service account") as info:
        calendar_for(google, rsa_key, service_account_json=secret_text).find(KEY)
    assert "very-secret" not in str(info.value)
    broken = json.loads(key_json(rsa_key))
    broken["private_key"] = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
    with pytest.raises(GoogleCalendarError, match="private_key cannot be read") as info:
        calendar_for(google, rsa_key, service_account_json=json.dumps(broken)).find(KEY)
    assert "bm90IGEga2V5" not in str(info.value) and not info.value.retryable
    # the key file works like the JSON
    path = tmp_path / "sa.json"
    path.write_text(key_json(rsa_key))
    by_file = calendar_for(google, rsa_key, service_account_json="", service_account_file=str(path))
    assert by_file.busy([ANA], T14, T15) == {"ana": []}


def test_the_plugin_builds_the_calendar_from_its_section_and_the_environment(
        google: GoogleCalendarStandin, rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    team = resources.files("closeloop").joinpath("examples/team.toml").read_text()
    path = tmp_path / "closeloop.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + team + f"""
[calendars.google]
organizer_calendar = "{ORGANIZER}"
api_endpoint = "{google.api_endpoint}"
token_uri = "{google.token_uri}"
timeout = 5
""")
    config = load(path, env={})
    secrets = Secrets({ENV_SERVICE_ACCOUNT_JSON: key_json(rsa_key)})
    [calendar] = GooglePlugin().calendars(PluginContext(config=config, directory=config.people_directory(),
                                                        secrets=secrets))
    assert calendar.name == "google" and ENV_SERVICE_ACCOUNT_FILE in GooglePlugin.secrets
    assert calendar.busy([ANA], DAY, DAY + timedelta(days=1))["ana"] == [
        Interval(start=DAY.replace(hour=9), end=DAY.replace(hour=10))]
    assert key_json(rsa_key) not in repr(calendar.config) and "very" not in repr(secrets)

    path.write_text(path.read_text() + 'colour = "blue"\n')
    with pytest.raises(Exception, match="colour"):
        load(path, env={})


# --------------------------------------------------------------------------- the validator itself


def test_the_discovery_validator_rejects_what_calendar_v3_does_not_describe() -> None:
    validator = DiscoveryValidator.shipped("calendar", "v3")
    good = {"kind": "calendar#freeBusy", "timeMin": "2026-03-02T00:00:00Z", "timeMax": "2026-03-03T00:00:00Z",
            "calendars": {"ana@example.com": {"busy": [{"start": "2026-03-02T09:00:00Z",
                                                        "end": "2026-03-02T10:00:00+01:00"}]},
                          "cy@elsewhere.example": {"errors": [{"domain": "global", "reason": "notFound"}]}}}
    assert validator.errors("POST", "/calendar/v3/freeBusy?alt=json", 200, good) == []
    bad_type = json.loads(json.dumps(good))
    bad_type["calendars"]["ana@example.com"]["busy"][0]["start"] = 1772442000  # epoch seconds, not RFC 3339
    bad_format = json.loads(json.dumps(good))
    bad_format["timeMax"] = "2026-03-03 00:00"  # no T, no offset
    misspelt = json.loads(json.dumps(good))
    misspelt["calendars"]["ana@example.com"]["busyy"] = []
    not_a_list = json.loads(json.dumps(good))
    not_a_list["calendars"]["ana@example.com"]["busy"] = {"start": "2026-03-02T09:00:00Z"}
    for body, where in [(bad_type, "calendars/ana@example.com/busy/0/start"), (bad_format, "timeMax"),
                        (misspelt, "calendars/ana@example.com"), (not_a_list, "calendars/ana@example.com/busy")]:
        errors = validator.errors("POST", "/calendar/v3/freeBusy", 200, body)
        assert len(errors) == 1 and f": {where}: " in errors[0], errors
    with pytest.raises(SpecViolation, match="sequence"):
        validator.check("GET", "/calendar/v3/calendars/x/events/abcde", 200, {"id": "abcde", "sequence": "1"})
    with pytest.raises(SpecViolation, match="responseStatus"):
        validator.check("GET", "/calendar/v3/calendars/x/events/abcde", 200,
                        {"attendees": [{"email": "a@example.com", "responseStatus": True}]})
    # requests: events.insert requires start and end (annotations.required); a deletion answers no body;
    # errors follow Google's envelope; a path the document does not have is a violation
    assert validator.request_errors("POST", "/calendar/v3/calendars/x/events", {"summary": "x"}) == [
        "calendar.events.insert: <body>: 'end' is a required property",
        "calendar.events.insert: <body>: 'start' is a required property"]
    assert validator.request_errors("PATCH", "/calendar/v3/calendars/x/events/abcde", {"summary": "x"}) == []
    assert validator.errors("DELETE", "/calendar/v3/calendars/x/events/abcde", 200, {"ok": True})
    assert validator.errors("GET", "/calendar/v3/calendars/x/events/abcde", 404, {"error": {"code": "404"}})
    with pytest.raises(SpecViolation, match="no method"):
        validator.check("GET", "/calendar/v3/freeBusy", 200, {})
