"""A PagerDuty REST API v2 stand-in: an incident's log entries, as `PagerDutyTimelineSource` reads them.

    with PagerDutyStandin(token="pd-token") as pd:      # 127.0.0.1, a free port; pd.url is the base URL
        pd.add_incident("PABC123", [("trigger_log_entry", t0, "Triggered through the API"), ...])

Implemented (state in memory): `GET /incidents/{id}/log_entries` (and the account-wide `GET /log_entries`) with
offset pagination (`offset`,
`limit` capped at `max_limit`, default 25, `more`, `total` only with `total=true`), `since` / `until`
(ISO 8601, [since, until)), sorted by `created_at`. Authentication is `Authorization: Token token=<token>`
(401 otherwise). Errors come as PagerDuty's `{"error": {"message", "code"}}`. Every URL in a response is built
from the server's own address.

Test hooks: `incidents` (id -> list of entry dicts), `requests` (Counter of "METHOD /route/{template}"),
`add_incident()`, and faults, each consumed by the next matching request: `fail_next(n, status=500)`,
`rate_limit_next(retry_after=1)` (429 with Retry-After). `validator(method, path, status, body)` is called on
every JSON response before it is sent; whatever it raises is recorded in `violations` (tests fail on any).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from closeloop.standins._server import JsonHandler, StandinServer, Validator, compile_routes, match_route

ROUTES = [("GET", "/incidents/{id}/log_entries", "log_entries"), ("GET", "/log_entries", "all_log_entries")]
_ROUTES = compile_routes(ROUTES)
CHANNELS = {"trigger_log_entry": "api", "annotate_log_entry": "note", "resolve_log_entry": "website",
            "acknowledge_log_entry": "website", "notify_log_entry": "auto", "escalate_log_entry": "auto",
            "assign_log_entry": "website"}
ERROR_CODES = {400: 2001, 401: 2006, 403: 2010, 404: 2100, 429: 2020, 500: 2000, 502: 2000, 503: 2000}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message)
        self.status, self.headers = status, headers or {}
        self.body = {"error": {"message": message, "code": ERROR_CODES.get(status, 2000)}}


class PagerDutyStandin(StandinServer):
    thread_name = "pagerduty-standin"

    def __init__(self, *, token: str = "pd-token", max_limit: int = 100, validator: Validator | None = None) -> None:
        super().__init__(validator)
        self.token = token
        self.max_limit = max_limit
        self.incidents: dict[str, list[dict[str, Any]]] = {}
        self._next_id = 1000
        self._serve(_Handler)

    # ------------------------------------------------------------------ state
    def add_incident(self, incident_id: str,
                     entries: Iterable[tuple[str, datetime, str] | tuple[str, datetime, str, dict[str, Any]]],
                     *, title: str = "Checkout returns 500s", service: str = "checkout") -> None:
        """Log entries as (type, created_at, summary[, extra]), where extra may carry `agent` (a user's name),
        `note` or `assignees` (names)."""
        with self._lock:
            log = self.incidents.setdefault(incident_id, [])
            for entry in entries:
                kind, at, summary, *rest = entry
                extra = rest[0] if rest else {}
                self._next_id += 1
                log.append({"id": f"R{self._next_id:013d}", "type": kind, "at": at.astimezone(UTC),
                            "summary": summary, "agent": extra.get("agent"), "note": extra.get("note"),
                            "assignees": list(extra.get("assignees") or []), "title": title, "service": service})
            log.sort(key=lambda e: (e["at"], e["id"]))

    # ------------------------------------------------------------------ representations
    def _ref(self, kind: str, ident: str, summary: str, path: str) -> dict[str, Any]:
        return {"id": ident, "type": kind, "summary": summary, "self": f"{self.url}/{path}/{ident}",
                "html_url": f"{self.url}/{path}/{ident}"}

    def _user(self, name: str) -> dict[str, Any]:
        ident = "P" + "".join(c for c in name.upper() if c.isalnum())[:6].ljust(6, "X")
        return self._ref("user_reference", ident, name, "users")

    def _entry(self, incident_id: str, e: dict[str, Any]) -> dict[str, Any]:
        service = self._ref("service_reference", "PSVC" + str(sum(map(ord, e["service"])) % 1000).zfill(3),
                            e["service"], "services")
        agent = self._user(e["agent"]) if e["agent"] else service
        out: dict[str, Any] = {
            "id": e["id"], "type": e["type"], "summary": e["summary"],
            "self": f"{self.url}/log_entries/{e['id']}?incident_id={incident_id}",
            "html_url": f"{self.url}/incidents/{incident_id}/log_entries/{e['id']}",
            "created_at": _iso(e["at"]), "agent": agent,
            "channel": {"type": CHANNELS.get(e["type"], "auto")},
            "service": service, "incident": self._ref("incident_reference", incident_id, e["title"], "incidents"),
            "teams": [], "contexts": [], "event_details": {},
        }
        if e["note"]:
            out["note"] = e["note"]
            out["channel"]["summary"] = e["note"]
        if e["type"] in ("assign_log_entry", "escalate_log_entry"):
            out["assignees"] = [self._user(name) for name in e["assignees"]]
        return out

    # ------------------------------------------------------------------ handlers
    def h_all_log_entries(self, req: _Request) -> tuple[int, Any]:
        return self.h_log_entries(req)

    def h_log_entries(self, req: _Request) -> tuple[int, Any]:
        incident_id = req.args.get("id")
        try:
            limit = int(req.param("limit") or 25)
            offset = int(req.param("offset") or 0)
        except ValueError:
            raise HttpError(400, "Invalid Input Provided") from None
        if limit < 1 or offset < 0:
            raise HttpError(400, "Invalid Input Provided")
        limit = min(limit, self.max_limit)
        bounds = []
        for name in ("since", "until"):
            value = req.param(name)
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
            except ValueError:
                raise HttpError(400, "Invalid Input Provided") from None
            bounds.append(parsed.replace(tzinfo=parsed.tzinfo or UTC) if parsed else None)
        since, until = bounds
        with self._lock:
            if incident_id is not None and incident_id not in self.incidents:
                raise HttpError(404, "Not Found")
            logs = [(i, e) for i, log in self.incidents.items() if incident_id in (None, i) for e in log]
            chosen = [(i, e) for i, e in sorted(logs, key=lambda ie: (ie[1]["at"], ie[1]["id"]))
                      if (since is None or e["at"] >= since) and (until is None or e["at"] < until)]
            page = chosen[offset:offset + limit]
            body = {"log_entries": [self._entry(i, e) for i, e in page], "limit": limit, "offset": offset,
                    "more": offset + limit < len(chosen),
                    "total": len(chosen) if (req.param("total") or "").lower() == "true" else None}
        return 200, body


class _Request:
    def __init__(self, method: str, path: str, query: dict[str, list[str]], args: dict[str, str]) -> None:
        self.method, self.path, self.query, self.args = method, path, query, args

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


class _Handler(JsonHandler):
    standin: PagerDutyStandin

    def _dispatch(self, method: str) -> None:
        s = self.standin
        parts = urlsplit(self.path)
        self._read_body()
        path = parts.path
        try:
            if (route := match_route(_ROUTES, method, path)) is None:
                raise HttpError(404, "Not Found")
            template, name, args = route
            with s._lock:
                s.requests[f"{method} {template}"] += 1
            if fault := s._take_fault(method, template):
                if fault.kind == "rate":
                    raise HttpError(429, "Rate Limit Exceeded", {"Retry-After": str(fault.kw["retry_after"])})
                raise HttpError(fault.kw["status"], "Internal Server Error (injected)")
            if self.headers.get("Authorization", "") != f"Token token={s.token}":
                raise HttpError(401, "Unauthorized")
            status, body = getattr(s, f"h_{name}")(_Request(method, path, parse_qs(parts.query), args))
            self._send_json(status, body, path)
        except HttpError as err:
            try:
                self._send_json(err.status, err.body, path, err.headers)
            except OSError:
                pass
        except OSError:
            pass  # the client went away
