"""The review meeting in Google Calendar, through google-api-python-client (Calendar API v3) as a service account.

Authentication: the service account's JSON key (CLOSELOOP_GOOGLE_SERVICE_ACCOUNT_JSON, or the file named by
CLOSELOOP_GOOGLE_SERVICE_ACCOUNT_FILE) signs a JWT that `token_uri` trades for an access token with the scope
https://www.googleapis.com/auth/calendar (google-auth does this, and again when the token expires). With
`subject` set, the service account acts as that user (domain-wide delegation); without it, as itself, and the
organiser calendar must be shared with it. The key is read when the calendar is first used and never logged.

How an event is found again. The event id is derived from the idempotency key (`event_id`: "closeloop" and the
base32hex of sha256(key), lower case, which is Google's id alphabet [a-v0-9]), so
- `invite` inserts with that id: a second insert of the same key answers 409 (duplicate), and the event that
  is there is the answer; `find`, `reschedule` and `cancel` address the event by it, with no search;
- the key is also kept in `extendedProperties.private.closeloopKey`, and the attendees' person keys in
  `closeloopAttendees` (JSON), so `find` returns the Meeting as booked.
A deleted event stays in Google Calendar as `status: cancelled` (its id stays taken): `find` reads it as
nothing booked, `invite` under its key books it again by restoring it (status confirmed, the new slot), and
`cancel` answers False (Google: 410 Gone).

Calls: `busy` is one `freebusy.query` per 50 calendars (Google's limit per query), each attendee's calendar
being their e-mail address; a calendar Google answers with `errors` (notFound: not in the domain nor shared)
has no busy times (a warning is logged). `invite` first reads the event (a retry after a lost answer finds it
booked), then asks free/busy for the slot once more and raises `SlotTaken` when an attendee became busy, then
`events.insert` with `sendUpdates=all` (Google e-mails the invitations). `reschedule` is `events.patch` of what
changed (start, end, attendees, summary) with `sendUpdates=all`, and no call when nothing did; it does not
re-check free/busy (the event itself makes its attendees busy). `cancel` is `events.delete` with
`sendUpdates=all` (Google sends the cancellations).

Errors become `GoogleCalendarError` (an `HttpIntegrationError`): retryable for 429, 5xx, 408, Google's
rate-limit 403s (rateLimitExceeded, userRateLimitExceeded, quotaExceeded), timeouts and connection failures;
not retryable, with one line saying what to fix, for other 4xx (400, 401, 403, 404) and a service account
key that cannot be read or is refused by the token endpoint. The client never retries by itself
(`num_retries=0`): retries belong to the activity's retry policy, where the stable event id makes them safe.

httplib2 is not thread-safe and activities run in a thread pool: each thread has its own authorised
connection (`execute(http=...)`); the service object and the credentials are shared.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import google_auth_httplib2
import httplib2
import structlog
from google.auth.exceptions import GoogleAuthError, RefreshError, TransportError
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from pydantic import Field

from closeloop.integrations.base import Calendar, HttpIntegrationError, Interval, SlotTaken
from closeloop.integrations.google.settings import (
    ENV_SERVICE_ACCOUNT_FILE,
    ENV_SERVICE_ACCOUNT_JSON,
    SCOPE,
    GoogleCalendarSettings,
)
from closeloop.models import Meeting, Person

log = structlog.get_logger("closeloop.google")

EVENT_ID_PREFIX = "closeloop"
FREEBUSY_MAX_CALENDARS = 50  # Google's calendarExpansionMax: more calendars in one query fail
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})
KEY_PROPERTY, ATTENDEES_PROPERTY = "closeloopKey", "closeloopAttendees"
UNAVAILABLE_PROPERTY = "closeloopUnavailable"  # Meeting.unavailable, JSON; those attendees are `optional`
PROPERTY_MAX = 1024  # Google's limit on an extended property's value


def event_id(idempotency_key: str) -> str:
    """The Google event id of the meeting booked under `idempotency_key`: stable, [a-v0-9], 61 characters."""
    digest = hashlib.sha256(idempotency_key.encode()).digest()
    return EVENT_ID_PREFIX + base64.b32hexencode(digest).decode().rstrip("=").lower()


def rfc3339(at: datetime) -> str:
    """`at` in UTC as RFC 3339 (`2026-03-02T14:00:00Z`); a naive time is taken as UTC."""
    at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S" + (".%f" if at.microsecond else "") + "Z")


def parse_time(value: Any) -> datetime:
    """A Google date-time (RFC 3339, any offset) as an aware UTC datetime."""
    parsed = datetime.fromisoformat(str(value))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def event_time(value: Mapping[str, Any]) -> datetime:
    """An EventDateTime's instant: `dateTime`, or midnight UTC of an all-day event's `date`."""
    if value.get("dateTime"):
        return parse_time(value["dateTime"])
    return datetime.combine(date.fromisoformat(str(value["date"])), time(), UTC)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class GoogleCalendarError(HttpIntegrationError):
    pass


class GoogleCalendarConfig(GoogleCalendarSettings):
    """`[calendars.google]` plus the service account key, which comes from the environment only."""

    service_account_json: str = Field(default="", repr=False)  # never in a repr or a log line
    service_account_file: str = Field(default="", repr=False)


class GoogleCalendar(Calendar):
    name = "google"

    def __init__(self, config: GoogleCalendarConfig, people: Mapping[str, Person] | None = None) -> None:
        self.config = config
        self.people = dict(people or {})  # the directory: attendee keys of a meeting not among `people`
        self._lock = threading.Lock()
        self._local = threading.local()
        self._credentials: service_account.Credentials | None = None
        self._service: Any = None

    # ------------------------------------------------------------------ the client
    def _key_info(self) -> dict[str, Any]:
        text = self.config.service_account_json
        source = ENV_SERVICE_ACCOUNT_JSON
        if not text and self.config.service_account_file:
            source = ENV_SERVICE_ACCOUNT_FILE
            try:
                text = Path(self.config.service_account_file).read_text()
            except OSError as exc:
                raise GoogleCalendarError(f"google calendar: cannot read the service account key named by {source} "
                                          f"({exc.strerror or type(exc).__name__})", retryable=False) from None
        if not text:
            raise GoogleCalendarError(f"google calendar: no service account key: set {ENV_SERVICE_ACCOUNT_JSON} (the "
                                      f"JSON key) or {ENV_SERVICE_ACCOUNT_FILE} (its path)", retryable=False)
        try:
            info = json.loads(text)
        except ValueError:
            info = None
        if not isinstance(info, dict) or info.get("type") != "service_account" or not info.get("client_email") \
                or not info.get("private_key"):
            raise GoogleCalendarError(f"google calendar: {source} is not a service account's JSON key (type "
                                      f"service_account, client_email, private_key)", retryable=False)
        return info

    def _creds(self) -> service_account.Credentials:
        with self._lock:
            if self._credentials is None:
                info = self._key_info()
                from_info: Any = service_account.Credentials.from_service_account_info  # untyped
                try:
                    self._credentials = from_info(
                        {**info, "token_uri": self.config.token_uri}, scopes=[SCOPE],
                        subject=self.config.subject or None)
                except (ValueError, TypeError, KeyError):  # the message may quote the key: not repeated
                    raise GoogleCalendarError("google calendar: the service account key's private_key cannot be "
                                              "read", retryable=False) from None
            return self._credentials

    def _http(self) -> google_auth_httplib2.AuthorizedHttp:
        """This thread's authorised connection."""
        http: google_auth_httplib2.AuthorizedHttp | None = getattr(self._local, "http", None)
        if http is None:
            http = google_auth_httplib2.AuthorizedHttp(self._creds(), http=httplib2.Http(timeout=self.config.timeout))
            self._local.http = http
        return http

    def _api(self) -> Any:
        """The Calendar v3 service, from the discovery document shipped with google-api-python-client."""
        http = self._http()
        with self._lock:
            if self._service is None:
                endpoint = self.config.api_endpoint.rstrip("/") + "/"
                self._service = build("calendar", "v3", http=http, static_discovery=True, cache_discovery=False,
                                      client_options={"api_endpoint": endpoint})
            return self._service

    def _execute(self, request: Any, what: str) -> Any:
        try:
            return request.execute(http=self._http(), num_retries=0)
        except HttpError as exc:
            raise self._http_error(exc, what) from None
        except RefreshError as exc:  # the token endpoint refused the key: its answer, never the key
            reason = str(exc.args[0]) if exc.args else type(exc).__name__
            raise GoogleCalendarError(f"google calendar: {what}: the token endpoint refused the service account "
                                      f"({_one_line(reason)}): check the key, and for `subject` the domain-wide "
                                      f"delegation", retryable=bool(getattr(exc, "retryable", False))) from None
        except (TransportError, httplib2.HttpLib2Error, OSError) as exc:
            raise GoogleCalendarError(f"google calendar: {what}: {type(exc).__name__}: {_one_line(str(exc))}",
                                      retryable=True) from None
        except GoogleAuthError as exc:
            raise GoogleCalendarError(f"google calendar: {what}: {type(exc).__name__}", retryable=False) from None

    def _http_error(self, exc: HttpError, what: str) -> GoogleCalendarError:
        status = int(exc.resp.status)
        reason, message = "", ""
        try:
            error = json.loads(exc.content.decode("utf-8", "replace"))["error"]
            message = str(error.get("message") or "")
            reason = str((error.get("errors") or [{}])[0].get("reason") or "")
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            message = exc.content.decode("utf-8", "replace")[:200]
        rate_limited = status in (403, 429) and reason in RATE_LIMIT_REASONS
        retryable = HttpIntegrationError.is_retryable(status, rate_limited=rate_limited)
        retry_after: float | None = None
        try:
            retry_after = float(exc.resp.get("retry-after")) if exc.resp.get("retry-after") else None
        except ValueError:
            pass
        line = f"google calendar: {what}: HTTP {status}" + (f" {reason}" if reason else "") + \
               (f": {_one_line(message)}" if message else "")
        calendar = self.config.organizer_calendar
        acting = f" acting as {self.config.subject}" if self.config.subject else ""
        if status == 401:
            line += " (the access token was refused: check the service account key)"
        elif status == 403 and not rate_limited:
            line += (f" (the service account{acting} may not write to calendar {calendar!r}: share the calendar "
                     f"with it, or set `subject` and grant domain-wide delegation)")
        elif status == 404:
            line += f" (is calendar {calendar!r} right, and visible to the service account{acting}?)"
        return GoogleCalendarError(line, retryable=retryable, status=status, retry_after=retry_after)

    # ------------------------------------------------------------------ Calendar
    def busy(self, people: list[Person], start: datetime, end: datetime) -> dict[str, list[Interval]]:
        """Busy intervals per person key in [start, end), sorted: one free/busy query per 50 calendars."""
        result: dict[str, list[Interval]] = {p.key: [] for p in people}
        keys_by_email: dict[str, list[str]] = {}
        for person in people:
            email = person.email.strip().lower()
            if email:
                keys_by_email.setdefault(email, []).append(person.key)
            else:
                log.warning("google calendar: no e-mail address, so no busy times", person=person.key)
        api: Any = self._api() if keys_by_email else None  # no key needed when nobody has an address
        for chunk in _chunks(list(keys_by_email), FREEBUSY_MAX_CALENDARS):
            body = {"timeMin": rfc3339(start), "timeMax": rfc3339(end), "timeZone": "UTC",
                    "items": [{"id": email} for email in chunk]}
            answer = self._execute(api.freebusy().query(body=body), "free/busy query")
            calendars = {str(k).lower(): v for k, v in (answer.get("calendars") or {}).items()}
            for email in chunk:
                entry = calendars.get(email)
                errors = [e.get("reason", "?") for e in (entry or {}).get("errors") or []]
                if entry is None or errors:
                    log.warning("google calendar: no free/busy for a calendar", people=keys_by_email[email],
                                reasons=errors or ["missing from the answer"])
                    continue
                intervals = sorted((Interval(start=parse_time(b["start"]), end=parse_time(b["end"]))
                                    for b in entry.get("busy") or []), key=lambda i: (i.start, i.end))
                for key in keys_by_email[email]:
                    result[key] = list(intervals)
        return result

    def invite(self, meeting: Meeting, people: list[Person], idempotency_key: str) -> str:
        """Book the meeting in the organiser calendar once per key (Google e-mails the invitations); its htmlLink.
        SlotTaken when an attendee became busy in the slot since `busy` was asked."""
        eid = event_id(idempotency_key)
        existing = self._get(eid)
        if existing is not None and existing.get("status") != "cancelled":
            return self._ref(existing)  # booked before an answer was lost: nothing again
        guests = self._guests(meeting, people)
        busy = self.busy([g for g in guests if g.key not in meeting.unavailable], meeting.start, meeting.end)
        taken = [key for key, spans in busy.items()
                 if any(s.start < meeting.end and s.end > meeting.start for s in spans)]
        if taken:
            raise SlotTaken(f"{meeting.start.isoformat()} is no longer free for {', '.join(taken)}")
        body = self._event_body(meeting, guests, idempotency_key)
        if existing is None:
            try:
                return self._ref(self._execute(self._api().events().insert(
                    calendarId=self.config.organizer_calendar, body={"id": eid, **body}, sendUpdates="all"),
                    "booking the meeting"))
            except GoogleCalendarError as err:
                if err.status != 409:
                    raise
            existing = self._get(eid)  # 409: the id is taken, by this key's event (booked or cancelled)
            if existing is None:
                raise GoogleCalendarError(f"google calendar: event {eid} exists but cannot be read", retryable=True)
            if existing.get("status") != "cancelled":
                return self._ref(existing)
        log.info("google calendar: booking again the cancelled event of the key", event_id=eid)
        return self._ref(self._patch(eid, {**body, "status": "confirmed"}, "booking the meeting again"))

    def find(self, idempotency_key: str) -> Meeting | None:
        event = self._get(event_id(idempotency_key))
        if event is None or event.get("status") == "cancelled":
            return None
        return self._meeting(event)

    def reschedule(self, meeting: Meeting, people: list[Person], idempotency_key: str) -> str:
        """Move the key's event to `meeting`'s slot, title and attendees (Google tells them); nothing when it is
        there already."""
        eid = event_id(idempotency_key)
        event = self._get(eid)
        if event is None or event.get("status") == "cancelled":
            raise GoogleCalendarError(f"google calendar: no meeting is booked under {idempotency_key!r} to "
                                      f"reschedule", retryable=False, status=404)
        guests = self._guests(meeting, people)
        wanted = self._event_body(meeting, guests, idempotency_key)
        changes: dict[str, Any] = {}
        if event_time(event.get("start") or {}) != meeting.start or event_time(event.get("end") or {}) != meeting.end:
            changes["start"], changes["end"] = wanted["start"], wanted["end"]
        if event.get("summary", "") != wanted["summary"]:
            changes["summary"] = wanted["summary"]
        current = {str(a.get("email", "")).lower(): a for a in event.get("attendees") or []}
        if set(current) != {a["email"].lower() for a in wanted["attendees"]}:
            # kept attendees keep their answers (responseStatus); the list replaces the old one
            changes["attendees"] = [current.get(a["email"].lower(), a) for a in wanted["attendees"]]
        private = (event.get("extendedProperties") or {}).get("private") or {}
        if any(private.get(k) != v for k, v in wanted["extendedProperties"]["private"].items()):
            changes["extendedProperties"] = {"private": {**private, **wanted["extendedProperties"]["private"]}}
        if not changes:
            return self._ref(event)
        return self._ref(self._patch(eid, changes, "rescheduling the meeting"))

    def cancel(self, idempotency_key: str) -> bool:
        """Delete the key's event (Google sends the cancellations); False when none is booked or it is gone."""
        request = self._api().events().delete(calendarId=self.config.organizer_calendar,
                                              eventId=event_id(idempotency_key), sendUpdates="all")
        try:
            self._execute(request, "cancelling the meeting")
        except GoogleCalendarError as err:
            if err.status in (404, 410):  # never booked / deleted already
                return False
            raise
        return True

    # ------------------------------------------------------------------ helpers
    def _get(self, eid: str) -> dict[str, Any] | None:
        request = self._api().events().get(calendarId=self.config.organizer_calendar, eventId=eid)
        try:
            event: dict[str, Any] = self._execute(request, "reading the meeting")
        except GoogleCalendarError as err:
            if err.status in (404, 410):
                return None
            raise
        return event

    def _patch(self, eid: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        event: dict[str, Any] = self._execute(self._api().events().patch(
            calendarId=self.config.organizer_calendar, eventId=eid, body=body, sendUpdates="all"), what)
        return event

    def _guests(self, meeting: Meeting, people: list[Person]) -> list[Person]:
        """`people` and the meeting's other attendees found in the directory, each once, by key."""
        guests = {p.key: p for p in people}
        for key in meeting.attendees:
            if key not in guests:
                person = self.people.get(key)
                if person is None:
                    log.warning("google calendar: an attendee is not in the directory: not invited", person=key)
                else:
                    guests[key] = person
        return list(guests.values())

    def _event_body(self, meeting: Meeting, guests: list[Person], idempotency_key: str) -> dict[str, Any]:
        attendees, emails = [], set()
        for person in guests:
            email = person.email.strip()
            if email and email.lower() not in emails:
                emails.add(email.lower())
                attendee: dict[str, Any] = {"email": email, "displayName": person.name}
                if person.key in meeting.unavailable:
                    attendee["optional"] = True
                attendees.append(attendee)
        private = {KEY_PROPERTY: idempotency_key}
        keys = json.dumps([p.key for p in guests])
        if len(keys) <= PROPERTY_MAX:
            private[ATTENDEES_PROPERTY] = keys
        unavailable = json.dumps(meeting.unavailable)
        if meeting.unavailable and len(unavailable) <= PROPERTY_MAX:
            private[UNAVAILABLE_PROPERTY] = unavailable
        return {"summary": meeting.title,
                "start": {"dateTime": rfc3339(meeting.start), "timeZone": "UTC"},
                "end": {"dateTime": rfc3339(meeting.end), "timeZone": "UTC"},
                "attendees": attendees,
                "extendedProperties": {"private": private}}

    def _meeting(self, event: dict[str, Any]) -> Meeting:
        private = (event.get("extendedProperties") or {}).get("private") or {}
        try:
            attendees = [str(k) for k in json.loads(private[ATTENDEES_PROPERTY])]
        except (KeyError, ValueError, TypeError):
            by_email = {p.email.strip().lower(): key for key, p in self.people.items() if p.email}
            attendees = [by_email.get(str(a.get("email", "")).lower(), str(a.get("email", "")))
                         for a in event.get("attendees") or [] if a.get("email")]
        try:
            unavailable = [str(k) for k in json.loads(private.get(UNAVAILABLE_PROPERTY) or "[]")]
        except (ValueError, TypeError):
            unavailable = []
        return Meeting(title=str(event.get("summary") or ""), start=event_time(event.get("start") or {}),
                       end=event_time(event.get("end") or {}), attendees=attendees, calendar_ref=self._ref(event),
                       unavailable=unavailable)

    @staticmethod
    def _ref(event: Mapping[str, Any]) -> str:
        """What the invite notification shows: the event's page in Google Calendar (else its id)."""
        return str(event.get("htmlLink") or event.get("id") or "")


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
