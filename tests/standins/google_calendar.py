"""A Google Calendar API v3 stand-in, with the OAuth 2.0 token endpoint a service account signs in at.

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with validated(GoogleCalendarStandin, calendar_validator()) as google:    # 127.0.0.1, a free port
        google.add_service_account("closeloop@proj.iam.gserviceaccount.com", key.public_key())
        google.add_calendar("rota@example.com", writable=True)               # the organiser calendar
        google.add_calendar("ana@example.com", busy=[(t0, t1)])               # an attendee, busy t0-t1
        ... token_uri=google.token_uri, api_endpoint=google.api_endpoint ...

Implemented (state in memory), in the discovery document's layout (`servicePath` calendar/v3/):
- `POST /token`: the JWT bearer grant (RFC 7523) google-auth's service account credentials make. The assertion
  must be an RS256 JWT signed by a registered service account's key, with the calendar scope, for Google's
  token endpoint (`aud`: google-auth writes it so whatever `token_uri` is), unexpired; `sub` (domain-wide
  delegation) must be one of `delegated` when that is set.
  Answers `{"access_token", "expires_in", "token_type": "Bearer"}`, or 400/401 `{"error", "error_description"}`.
- `POST /calendar/v3/freeBusy`: busy periods per requested calendar id in [timeMin, timeMax), clipped to it and
  merged, rendered in the request's `timeZone` (UTC by default): the seeded busy times plus the confirmed,
  opaque events the calendar organises or attends (not declined). An unknown calendar answers
  `errors: [{domain: global, reason: notFound}]`; more than 50 calendars is 400 tooManyCalendarsRequested.
- `POST /calendar/v3/calendars/{calendarId}/events` (insert: a client-chosen `id` must be [a-v0-9]{5,1024};
  one taken, also by a cancelled event, is 409 duplicate), `GET`, `PATCH` (fields replace the event's; `status:
  confirmed` restores a cancelled event), `PUT` (the whole event) and `DELETE` (the event stays, `status:
  cancelled`; deleting it again is 410 deleted) of `.../events/{eventId}`. Events come back as Google shapes
  them: kind, etag, htmlLink, iCalUID, created/updated, creator/organizer, sequence (+1 on every change of
  time, attendees, title or status), attendees with `responseStatus`, start/end rendered in the event's
  `timeZone` (the calendar's `time_zone` when it has none).
- the calendar must be writable (`add_calendar(..., writable=True)`), 403 requiredAccessLevel when it is in
  `forbidden`, 404 notFound when unknown.
Every API request needs `Authorization: Bearer <a token this server issued>` (401 authError otherwise). Request
bodies are checked against the method's `request.$ref` schema (DiscoveryValidator): a violation is a 400, as
Google answers, and is recorded in `request_violations`. Errors are Google's envelope `{"error": {"code",
"message", "errors": [{"domain", "reason", "message"}], "status"}}`.

Test hooks: `events` (calendar id -> event id -> event), `busy` (calendar -> seeded (start, end) list),
`send_updates` (("insert" | "patch" | "update" | "delete", event id, the sendUpdates parameter)),
`freebusy_queries` (the request bodies), `grants` (the accepted JWT claims), `requests` (Counter of
"METHOD /route/{template}"), and faults, each consumed by the next matching request: `fail_next(n, status=500,
path=None)`, `rate_limit_next(retry_after=1)`, `delay_next(seconds)`. `validator(method, path, status, body)` is
called on every JSON response before it is sent (`calendar_validator()`: the discovery document's schemas, and
RFC 6749's token answers for /token); whatever it raises is recorded in `violations`.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jsonschema import Draft7Validator

from closeloop.standins._server import Fault, JsonHandler, StandinServer, Validator, compile_routes, match_route
from closeloop.standins.spec import SpecViolation
from tests.standins.discovery import DiscoveryValidator

SCOPE = "https://www.googleapis.com/auth/calendar"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The assertion's audience is Google's token endpoint wherever the grant is sent (google-auth writes it so).
AUDIENCE = "https://oauth2.googleapis.com/token"
BASE = "/calendar/v3"
ROUTES = [
    ("POST", f"{BASE}/freeBusy", "freebusy"),
    ("POST", f"{BASE}/calendars/{{calendarId}}/events", "insert"),
    ("GET", f"{BASE}/calendars/{{calendarId}}/events/{{eventId}}", "get"),
    ("PATCH", f"{BASE}/calendars/{{calendarId}}/events/{{eventId}}", "patch"),
    ("PUT", f"{BASE}/calendars/{{calendarId}}/events/{{eventId}}", "update"),
    ("DELETE", f"{BASE}/calendars/{{calendarId}}/events/{{eventId}}", "delete"),
]
_ROUTES = compile_routes(ROUTES)
EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          409: "ALREADY_EXISTS", 410: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
REASON = {400: "badRequest", 401: "authError", 403: "forbidden", 404: "notFound", 409: "duplicate", 410: "deleted",
          429: "rateLimitExceeded", 500: "backendError", 503: "backendError"}
CHANGES_SEQUENCE = ("start", "end", "attendees", "summary", "status", "location", "description")

# RFC 6749 5.1 and 5.2: what a token endpoint answers.
TOKEN_ANSWER = {"type": "object", "required": ["access_token", "token_type", "expires_in"],
                "additionalProperties": False,
                "properties": {"access_token": {"type": "string", "minLength": 1}, "token_type": {"enum": ["Bearer"]},
                               "expires_in": {"type": "integer", "minimum": 1}, "scope": {"type": "string"},
                               "id_token": {"type": "string"}}}
TOKEN_ERROR = {"type": "object", "required": ["error"], "additionalProperties": False,
               "properties": {"error": {"enum": ["invalid_request", "invalid_client", "invalid_grant",
                                                 "unauthorized_client", "unsupported_grant_type", "invalid_scope"]},
                              "error_description": {"type": "string"}, "error_uri": {"type": "string"}}}


class CalendarValidator:
    """The stand-in's answers checked: /token against RFC 6749, the rest against calendar.v3.json's schemas."""

    def __init__(self, discovery: DiscoveryValidator | None = None) -> None:
        self.discovery = discovery or DiscoveryValidator.shipped("calendar", "v3")

    def errors(self, method: str, path: str, status: int, body: Any) -> list[str]:
        if path.split("?", 1)[0] == "/token":
            schema = TOKEN_ANSWER if status == 200 else TOKEN_ERROR
            return [f"{method} /token -> {status}: {'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"
                    for e in Draft7Validator(schema).iter_errors(body)]
        return self.discovery.errors(method, path, status, body)

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        errors = self.errors(method, path, status, body)
        if errors:
            raise SpecViolation("\n".join(errors))


_VALIDATOR: CalendarValidator | None = None


def calendar_validator() -> CalendarValidator:
    """One CalendarValidator per test run (converting the document's schemas takes a moment)."""
    global _VALIDATOR
    if _VALIDATOR is None:
        _VALIDATOR = CalendarValidator()
    return _VALIDATOR


class GoogleError(Exception):
    def __init__(self, status: int, message: str, reason: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message)
        self.status, self.headers = status, headers or {}
        reason = reason or REASON.get(status, "backendError")
        self.body = {"error": {"code": status, "message": message,
                               "errors": [{"domain": "global", "reason": reason, "message": message}],
                               "status": STATUS.get(status, "UNKNOWN")}}


class TokenError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(error)
        self.status, self.body = status, {"error": error, "error_description": description}


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _parse_time(value: Any, what: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise GoogleError(400, f"Bad Request: {what}", "badRequest") from None
    if parsed.tzinfo is None:
        raise GoogleError(400, f"Missing time zone definition for {what}.", "timeRangeEmpty")
    return parsed.astimezone(UTC)


def _render(at: datetime, zone: str) -> str:
    local = at.astimezone(UTC if zone == "UTC" else ZoneInfo(zone))
    text = local.isoformat(timespec="seconds")
    return text.replace("+00:00", "Z") if zone == "UTC" else text


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class GoogleCalendarStandin(StandinServer):
    thread_name = "google-calendar-standin"

    def __init__(self, *, validator: Validator | None = None, time_zone: str = "Europe/Berlin",
                 token_lifetime: int = 3600, discovery: DiscoveryValidator | None = None) -> None:
        super().__init__(validator)
        self.time_zone = time_zone
        self.token_lifetime = token_lifetime
        self.discovery = discovery or calendar_validator().discovery
        self.service_accounts: dict[str, rsa.RSAPublicKey] = {}
        self.delegated: set[str] | None = None  # the users `sub` may name; None: any
        self.tokens: dict[str, dict[str, Any]] = {}
        self.grants: list[dict[str, Any]] = []
        self.calendars: set[str] = set()
        self.writable: set[str] = set()
        self.forbidden: set[str] = set()
        self.busy: dict[str, list[tuple[datetime, datetime]]] = {}
        self.events: dict[str, dict[str, dict[str, Any]]] = {}
        self.send_updates: list[tuple[str, str, str | None]] = []
        self.freebusy_queries: list[dict[str, Any]] = []
        self.request_violations: list[str] = []
        self._serve(_Handler)

    @property
    def token_uri(self) -> str:
        return self.url + "/token"

    @property
    def api_endpoint(self) -> str:
        """What google-api-python-client takes as `client_options.api_endpoint` (rootUrl + servicePath)."""
        return self.url + BASE + "/"

    # ------------------------------------------------------------------ state
    def add_service_account(self, email: str, public_key: rsa.RSAPublicKey) -> None:
        with self._lock:
            self.service_accounts[email] = public_key

    def add_calendar(self, calendar_id: str, busy: Iterable[tuple[datetime, datetime]] = (), *,
                     writable: bool = False) -> None:
        with self._lock:
            self.calendars.add(calendar_id)
            self.busy.setdefault(calendar_id, []).extend((s.astimezone(UTC), e.astimezone(UTC)) for s, e in busy)
            if writable:
                self.writable.add(calendar_id)
                self.events.setdefault(calendar_id, {})

    def live_events(self, calendar_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events.get(calendar_id, {}).values() if e["status"] != "cancelled"]

    def delay_next(self, seconds: float, path: str | None = None) -> None:
        self._faults.append(Fault("delay", path, seconds=seconds))

    # ------------------------------------------------------------------ the token endpoint
    def token(self, form: dict[str, list[str]]) -> dict[str, Any]:
        if form.get("grant_type", [""])[-1] != JWT_BEARER:
            raise TokenError(400, "unsupported_grant_type", "Invalid grant_type.")
        assertion = form.get("assertion", [""])[-1]
        try:
            head, payload, signature = assertion.split(".")
            header, claims = json.loads(_b64url_decode(head)), json.loads(_b64url_decode(payload))
            sig = _b64url_decode(signature)
        except ValueError:
            raise TokenError(400, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) "
                                                   "and in a reasonable timeframe.") from None
        key = self.service_accounts.get(str(claims.get("iss")))
        if header.get("alg") != "RS256" or key is None:
            raise TokenError(400, "invalid_grant", "Invalid grant: account not found")
        try:
            key.verify(sig, f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise TokenError(400, "invalid_grant", "Invalid JWT Signature.") from None
        now = time.time()
        if claims.get("aud") != AUDIENCE or not isinstance(claims.get("exp"), int) \
                or not isinstance(claims.get("iat"), int) or claims["exp"] <= now - 60 \
                or claims["iat"] > now + 60 or claims["exp"] - claims["iat"] > 3600:
            raise TokenError(400, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) "
                                                   "and in a reasonable timeframe.")
        if SCOPE not in str(claims.get("scope", "")).split():
            raise TokenError(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        subject = claims.get("sub")
        if subject is not None and self.delegated is not None and subject not in self.delegated:
            raise TokenError(401, "unauthorized_client", "Client is unauthorized to retrieve access tokens using "
                                                         "this method, or client not authorized for any of the "
                                                         "scopes requested.")
        token = "ya29.standin-" + secrets.token_urlsafe(24)
        with self._lock:
            self.grants.append(claims)
            self.tokens[token] = {"sa": claims["iss"], "sub": subject}
        return {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}

    # ------------------------------------------------------------------ the API
    def _calendar(self, calendar_id: str) -> dict[str, dict[str, Any]]:
        if calendar_id in self.forbidden:
            raise GoogleError(403, "You need to have writer access to this calendar.", "requiredAccessLevel")
        if calendar_id not in self.writable:
            raise GoogleError(404, "Not Found", "notFound")
        return self.events[calendar_id]

    def _event(self, calendar_id: str, event_id: str) -> dict[str, Any]:
        event = self._calendar(calendar_id).get(event_id)
        if event is None:
            raise GoogleError(404, "Not Found", "notFound")
        return event

    def _busy_of(self, calendar_id: str) -> list[tuple[datetime, datetime]]:
        spans = list(self.busy.get(calendar_id, []))
        for owner, events in self.events.items():
            for e in events.values():
                if e["status"] == "cancelled" or e.get("transparency") == "transparent":
                    continue
                attends = any(a.get("email", "").lower() == calendar_id.lower()
                              and a.get("responseStatus") != "declined" for a in e.get("attendees", []))
                if owner == calendar_id or attends:
                    spans.append((_parse_time(e["start"]["dateTime"], "start"),
                                  _parse_time(e["end"]["dateTime"], "end")))
        return spans

    def h_freebusy(self, req: _Request) -> tuple[int, Any]:
        body = req.json or {}
        if "timeMin" not in body or "timeMax" not in body:
            raise GoogleError(400, "Missing timeMin or timeMax.", "required")
        start, end = _parse_time(body["timeMin"], "timeMin"), _parse_time(body["timeMax"], "timeMax")
        if end <= start:
            raise GoogleError(400, "The specified time range is empty.", "timeRangeEmpty")
        items = body.get("items") or []
        if len(items) > 50:
            raise GoogleError(400, "Too many calendars requested.", "tooManyCalendarsRequested")
        zone = body.get("timeZone") or "UTC"
        with self._lock:
            self.freebusy_queries.append(body)
            calendars: dict[str, Any] = {}
            for item in items:
                cid = str(item.get("id", ""))
                if cid not in self.calendars:
                    calendars[cid] = {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
                    continue
                merged: list[list[datetime]] = []
                for s, e in sorted((max(s, start), min(e, end)) for s, e in self._busy_of(cid)
                                   if s < end and e > start):
                    if merged and s <= merged[-1][1]:
                        merged[-1][1] = max(merged[-1][1], e)
                    else:
                        merged.append([s, e])
                calendars[cid] = {"busy": [{"start": _render(s, zone), "end": _render(e, zone)} for s, e in merged]}
        return 200, {"kind": "calendar#freeBusy", "timeMin": _render(start, "UTC"), "timeMax": _render(end, "UTC"),
                     "calendars": calendars}

    def _normalise(self, calendar_id: str, event: dict[str, Any], fields: dict[str, Any]) -> None:
        """Apply request `fields` to `event` as Google stores them."""
        for name, value in fields.items():
            if name in ("start", "end"):
                if "dateTime" not in value:
                    raise GoogleError(400, "Bad Request: only timed events here", "badRequest")
                zone = value.get("timeZone") or self.time_zone
                try:
                    ZoneInfo(zone) if zone != "UTC" else None
                except Exception:  # noqa: BLE001 - any unknown zone name
                    raise GoogleError(400, "Invalid time zone definition for start time.", "timeRangeEmpty") from None
                at = _parse_time(value["dateTime"], name)
                value = {"dateTime": _render(at, zone), "timeZone": zone} if value.get("timeZone") \
                    else {"dateTime": _render(at, zone)}
            elif name == "attendees":
                before = {a["email"].lower(): a for a in event.get("attendees", [])}
                value = [{**{"responseStatus": "needsAction"}, **before.get(a["email"].lower(), {}), **a}
                         for a in value]
                for a in value:
                    if a["email"].lower() == calendar_id.lower():
                        a.update(organizer=True, self=True)
            elif name in ("id", "kind", "etag", "htmlLink", "iCalUID", "created", "updated", "creator",
                          "organizer", "sequence"):
                continue  # read-only, or fixed at insert
            event[name] = value
        if "start" in event and "end" in event and _parse_time(event["end"]["dateTime"], "end") < \
                _parse_time(event["start"]["dateTime"], "start"):
            raise GoogleError(400, "The specified time range is empty.", "timeRangeEmpty")

    def _touch(self, event: dict[str, Any], before: dict[str, Any]) -> None:
        if any(event.get(k) != before.get(k) for k in CHANGES_SEQUENCE):
            event["sequence"] = before.get("sequence", 0) + 1
        now = datetime.now(UTC)
        event["updated"] = _stamp(now)
        event["etag"] = f'"{int(now.timestamp() * 1000)}{event["sequence"]}"'

    def h_insert(self, req: _Request) -> tuple[int, Any]:
        cid = req.args["calendarId"]
        body = dict(req.json or {})
        with self._lock:
            events = self._calendar(cid)
            eid = body.get("id") or secrets.token_hex(13)
            if not EVENT_ID.match(eid):
                raise GoogleError(400, "Invalid resource id value.", "invalid")
            if eid in events:
                raise GoogleError(409, "The requested identifier already exists.", "duplicate")
            now = datetime.now(UTC)
            eid_b64 = base64.urlsafe_b64encode(f"{eid} {cid}".encode()).decode().rstrip("=")
            event: dict[str, Any] = {
                "kind": "calendar#event", "id": eid, "status": "confirmed",
                "htmlLink": f"{self.url}/calendar/event?eid={eid_b64}", "created": _stamp(now),
                "creator": {"email": cid, "self": True}, "organizer": {"email": cid, "self": True},
                "iCalUID": f"{eid}@google.com", "sequence": 0, "reminders": {"useDefault": True},
                "eventType": "default",
            }
            self._normalise(cid, event, body)
            self._touch(event, event)
            events[eid] = event
            self.send_updates.append(("insert", eid, req.param("sendUpdates")))
            return 200, json.loads(json.dumps(event))

    def h_get(self, req: _Request) -> tuple[int, Any]:
        with self._lock:
            return 200, json.loads(json.dumps(self._event(req.args["calendarId"], req.args["eventId"])))

    def _change(self, req: _Request, kind: str) -> tuple[int, Any]:
        cid, eid = req.args["calendarId"], req.args["eventId"]
        with self._lock:
            event = self._event(cid, eid)
            before = json.loads(json.dumps(event))
            if kind == "update":  # the whole event: what the body leaves out is gone
                for name in [k for k in event if k not in ("kind", "id", "htmlLink", "created", "creator",
                                                           "organizer", "iCalUID", "sequence", "etag", "updated")]:
                    del event[name]
                event.setdefault("status", "confirmed")
            self._normalise(cid, event, dict(req.json or {}))
            self._touch(event, before)
            self.send_updates.append((kind, eid, req.param("sendUpdates")))
            return 200, json.loads(json.dumps(event))

    def h_patch(self, req: _Request) -> tuple[int, Any]:
        return self._change(req, "patch")

    def h_update(self, req: _Request) -> tuple[int, Any]:
        return self._change(req, "update")

    def h_delete(self, req: _Request) -> tuple[int, Any]:
        cid, eid = req.args["calendarId"], req.args["eventId"]
        with self._lock:
            event = self._event(cid, eid)
            if event["status"] == "cancelled":
                raise GoogleError(410, "Resource has been deleted", "deleted")
            before = dict(event)
            event["status"] = "cancelled"
            self._touch(event, before)
            self.send_updates.append(("delete", eid, req.param("sendUpdates")))
        return 204, None


class _Request:
    def __init__(self, path: str, query: dict[str, list[str]], args: dict[str, str], body: Any) -> None:
        self.path, self.query, self.args, self.json = path, query, args, body

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


class _Handler(JsonHandler):
    standin: GoogleCalendarStandin

    def _dispatch(self, method: str) -> None:
        s = self.standin
        parts = urlsplit(self.path)
        raw = self._read_body()
        path = parts.path
        try:
            if method == "POST" and path == "/token":
                with s._lock:
                    s.requests["POST /token"] += 1
                if fault := s._take_fault(method, "/token", kinds=("delay",)):
                    self._fault(fault)
                try:
                    body = s.token(parse_qs(raw.decode("utf-8", "replace")))
                except TokenError as err:
                    self._send_json(err.status, err.body, path)
                    return
                self._send_json(200, body, path, {"Cache-Control": "no-store"})
                return
            if (route := match_route(_ROUTES, method, path)) is None:
                raise GoogleError(404, "Not Found", "notFound")
            template, name, args = route
            with s._lock:
                s.requests[f"{method} {template}"] += 1
            if fault := s._take_fault(method, template):
                self._fault(fault)
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in s.tokens:
                raise GoogleError(401, "Request had invalid authentication credentials. Expected OAuth 2 access "
                                       "token, login cookie or other valid authentication credential.", "authError")
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                raise GoogleError(400, "Parse Error", "parseError") from None
            if method in ("POST", "PUT", "PATCH"):
                problems = s.discovery.request_errors(method, path, body)
                if problems:
                    s.request_violations.extend(problems)
                    raise GoogleError(400, "Invalid request: " + "; ".join(problems), "invalid")
            status, answer = getattr(s, f"h_{name}")(_Request(path, parse_qs(parts.query), args, body))
            self._send_json(status, answer, path)
        except GoogleError as err:
            try:
                self._send_json(err.status, err.body, path, err.headers)
            except OSError:
                pass
        except OSError:
            pass  # the client went away

    def _fault(self, fault: Fault) -> None:
        if fault.kind == "delay":
            time.sleep(fault.kw["seconds"])
            return
        if fault.kind == "rate":
            raise GoogleError(429, "Rate Limit Exceeded", "rateLimitExceeded",
                              {"Retry-After": str(fault.kw["retry_after"])})
        status = fault.kw["status"]
        raise GoogleError(status, {404: "Not Found", 503: "The service is currently unavailable."}.get(
            status, "Backend Error"))

    def _send_json(self, status: int, body: Any, path: str, headers: dict[str, str] | None = None) -> None:
        if body is None and status == 204:  # events.delete: no body, nothing to validate
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super()._send_json(status, body, path, headers)
