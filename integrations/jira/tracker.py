"""Action items as Jira Cloud issues, through the `jira` library (REST API v2).

How a ticket is found again (the marker). Every issue closeloop opens carries
  - the label `closeloop-<first 12 hex digits of sha1(marker)>` (Jira labels allow no spaces and are
    exactly searchable: `find_by_marker` runs the JQL `labels = "closeloop-…"`), and
  - the marker text itself on the last line of the description (`closeloop-marker: <marker>`), which
    confirms a label hit and tells a human where the issue came from.
So `ensure_ticket` after a lost create response finds the issue that was created and opens no second one.

Comments are idempotent the same way: the body ends with `closeloop-comment: <idempotency key>`, and
`comment` first reads the issue's comments and adds nothing when one carries the key.

`statuses` asks for many issues at once: `key in (A, B, …)` through `GET /rest/api/2/search/jql`, following
`nextPageToken` until `isLast`, so N keys cost ceil(N / page size) requests. An issue whose status
category is `done` is `done`, or `wont_do` when its resolution is one of `wont_do_resolutions`.
Moved issues: Jira answers `key in (OLD-1)` with the issue under its new key (`NEW-5`, after a project move),
so the asked key is missing from the answer and an unasked one is in it. When a batch answer carries such
unasked keys, each asked key missing from it costs one `GET /issue/{key}` (few: moves are rare), which Jira
answers under the new key, or with 404 when the issue is really gone; `statuses` then returns
`Ticket(key="NEW-5")` for the asked key `OLD-1`. An issue key in a path is one quoted segment
(closeloop.integrations.urls), in JQL a quoted string. When the answer carries no unasked key, a missing key is
`deleted` without asking again. `request_count` counts the HTTP requests made (the constructor's
serverInfo included), for the reconciliation sweep's report.

Per service: `JiraConfig.services` maps a service to overrides of the project, issue type, priorities,
labels, components, due-date field, custom fields, transitions and won't-do resolutions
(`[trackers.jira.services.NAME]`); `create` uses the request's service, `close`/`reopen`/`statuses` the
settings of the project an issue key belongs to. `custom_fields` values are sent as configured, with
`{name}` in strings filled from `TicketRequest.context` (closeloop.integrations.base.TICKET_TEMPLATE_FIELDS).

Errors: `jira.exceptions.JIRAError` and `requests` failures become `JiraError` (an `IntegrationError`):
retryable for 429, 5xx, 408, 403 with Retry-After, connection failures and timeouts; not retryable for
other 4xx (400, 401, 403, 404). The client itself never retries (`max_retries=0` by default): its session
would re-send a POST whose answer was lost, and retries belong to the activity's retry policy, where
`ensure_ticket` makes them safe.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from jira import JIRA
from jira.exceptions import JIRAError
from pydantic import Field

from closeloop.integrations.base import HttpIntegrationError, Ticket, TicketRequest, Tracker
from closeloop.integrations.jira.settings import JiraSettings
from closeloop.integrations.urls import segment
from closeloop.metrics import TRACKER_CALLS, TRACKER_RATE_LIMIT_WAITS
from closeloop.models import Person

MARKER_PREFIX = "closeloop-marker: "
COMMENT_PREFIX = "closeloop-comment: "


def jql_string(value: str) -> str:
    """A JQL string literal holding exactly `value` (backslashes and quotes escaped): data never becomes JQL."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def marker_label(marker: str) -> str:
    return "closeloop-" + hashlib.sha1(marker.encode()).hexdigest()[:12]


class JiraError(HttpIntegrationError):
    pass


class JiraConfig(JiraSettings):
    """`[trackers.jira]` (JiraSettings, whose defaults are the only ones) plus the account, which comes from the
    environment, and tuning the config file does not expose."""

    url: str
    project: str = "CL"
    email: str = ""
    api_token: str = Field(default="", repr=False)  # never in a repr or a log line
    done_status_category: str = "done"
    page_size: int = 100  # maxResults per search request (Jira Cloud caps it at 100 with fields)
    keys_per_query: int = 100  # keys in one `key in (…)` JQL: one page each, and a GET URL well under 8 KB
    max_retries: int = 0

    def for_service(self, service: str | None) -> JiraConfig:
        """The settings for one service's action items: `services[service]` over the defaults."""
        override = self.services.get(service or "")
        overrides = override.model_dump(exclude_none=True) if override is not None else {}
        return self.model_copy(update={**overrides, "services": {}}) if overrides else self

    def for_key(self, key: str) -> JiraConfig:
        """The settings of the project an issue key belongs to (a service's project, else the defaults)."""
        project = key.rsplit("-", 1)[0]
        if project != self.project:
            for service, override in self.services.items():
                if override.project == project:
                    return self.for_service(service)
        return self


def render(value: Any, context: dict[str, str]) -> Any:
    """A configured field value with `{name}` filled from the ticket's context (strings inside lists and
    tables too); other values as they are."""
    if isinstance(value, str):
        try:
            return value.format_map(context)
        except (KeyError, ValueError, IndexError) as exc:
            raise JiraError(f"Jira custom field template {value!r}: {exc!r} is not a ticket field",
                            retryable=False) from None
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _wrap(exc: Exception, what: str) -> JiraError:
    if isinstance(exc, JIRAError):
        status = exc.status_code
        headers = exc.response.headers if exc.response is not None else None
        retry_after = _retry_after(headers)
        retryable = JiraError.is_retryable(status, rate_limited=status == 403 and retry_after is not None)
        text = (exc.text or "").strip()
        return JiraError(f"Jira {what}: HTTP {status}: {text}"[:1000], retryable=retryable, status=status,
                         retry_after=retry_after)
    return JiraError(f"Jira {what}: {type(exc).__name__}: {exc}"[:1000], retryable=True)


class JiraTracker(Tracker):
    name = "jira"

    def __init__(self, config: JiraConfig, people: dict[str, Person] | None = None) -> None:
        self.config = config
        self.people = people or {}
        self._client: JIRA | None = None
        self._lock = threading.Lock()
        self.request_count = 0

    # ------------------------------------------------------------------ plumbing
    @property
    def client(self) -> JIRA:
        """Built on first use: the constructor already calls the server (serverInfo)."""
        with self._lock:
            if self._client is None:
                with self._errors("connect"):
                    self._client = JIRA(
                        self.config.url,
                        basic_auth=(self.config.email, self.config.api_token) if self.config.email else None,
                        max_retries=self.config.max_retries, timeout=self.config.timeout,
                        options={"check_update": False}, logging=False,
                    )
                self.request_count += 1  # the constructor's GET serverInfo
                self._client._session.hooks["response"].append(self._count)
            return self._client

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.request_count += 1
        TRACKER_CALLS.labels("jira").inc()
        if response.status_code == 429 or (response.status_code == 403 and "retry-after" in response.headers):
            TRACKER_RATE_LIMIT_WAITS.labels("jira").inc()

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except JiraError:
            raise
        except (JIRAError, requests.RequestException) as exc:
            raise _wrap(exc, what) from exc

    def _url(self, key: str) -> str:
        return f"{self.config.url.rstrip('/')}/browse/{key}"

    def _ticket(self, raw: dict[str, Any]) -> Ticket:
        fields = raw.get("fields") or {}
        status = fields.get("status") or {}
        category = (status.get("statusCategory") or {}).get("key", "")
        resolution = (fields.get("resolution") or {}).get("name", "") or ""
        state = "open"
        settings = self.config.for_key(raw["key"])
        if category == settings.done_status_category:
            state = "wont_do" if resolution in settings.wont_do_resolutions else "done"
        return Ticket(key=raw["key"], url=self._url(raw["key"]), status=state, resolution=resolution)

    def _search(self, jql: str, fields: str) -> list[dict[str, Any]]:
        issues: list[dict[str, Any]] = []
        token: str | None = None
        with self._errors("search"):
            while True:
                page = self.client.enhanced_search_issues(jql, nextPageToken=token, maxResults=self.config.page_size,
                                                          fields=fields, json_result=True)
                issues.extend(page.get("issues") or [])
                token = page.get("nextPageToken")
                if page.get("isLast", not token) or not token:
                    return issues

    def _account_id(self, person: Person) -> str | None:
        known = self.people.get(person.key, person)
        return known.handles.get("jira") or person.handles.get("jira")

    # ------------------------------------------------------------------ Tracker
    def find_by_marker(self, marker: str) -> Ticket | None:
        label = marker_label(marker)
        hits = self._search(f'labels = "{label}" ORDER BY created ASC', "status,resolution,description")
        confirmed = [h for h in hits if MARKER_PREFIX + marker in str((h.get("fields") or {}).get("description") or "")]
        chosen = confirmed or hits
        if not chosen:
            return None
        return self._ticket(min(chosen, key=lambda h: int(h.get("id") or 0)))

    def create(self, request: TicketRequest) -> Ticket:
        cfg = self.config.for_service(request.service)
        priority = cfg.priorities.get(request.priority, request.priority)
        labels = list(dict.fromkeys(label.replace(" ", "-")
                                    for label in [*cfg.labels, *request.labels, marker_label(request.marker)]))
        fields: dict[str, Any] = {
            "project": {"key": cfg.project},
            "issuetype": {"name": cfg.issue_type},
            "summary": request.title[:255],
            "description": f"{request.body.rstrip()}\n\n----\n{MARKER_PREFIX}{request.marker}",
            "priority": {"name": priority},
            "labels": labels,
            cfg.due_date_field: request.due_at.date().isoformat(),
        }
        if cfg.components:
            fields["components"] = [{"name": name} for name in cfg.components]
        for field_id, value in cfg.custom_fields.items():
            fields[field_id] = render(value, request.context)
        account_id = self._account_id(request.assignee)
        if account_id:
            fields["assignee"] = {"accountId": account_id}
        with self._errors("create issue"):
            issue = self.client.create_issue(fields=fields, prefetch=False)
        return Ticket(key=issue.key, url=self._url(issue.key))

    def comment(self, ticket_key: str, body: str, idempotency_key: str) -> None:
        tag = COMMENT_PREFIX + idempotency_key
        with self._errors("comment"):
            start = 0
            while True:
                page = self.client._get_json(f"issue/{segment(ticket_key)}/comment",
                                             params={"startAt": start, "maxResults": 100})
                comments = page.get("comments") or []
                if any(tag in str(c.get("body") or "") for c in comments):
                    return
                start += len(comments)
                if not comments or start >= int(page.get("total") or 0):
                    break
            self.client.add_comment(segment(ticket_key), f"{body.rstrip()}\n\n{tag}")

    def statuses(self, ticket_keys: list[str]) -> dict[str, Ticket]:
        keys = list(dict.fromkeys(ticket_keys))
        found: dict[str, Ticket] = {}
        size = max(1, self.config.keys_per_query)
        for i in range(0, len(keys), size):
            chunk = keys[i:i + size]
            answered: dict[str, Ticket] = {}
            for raw in self._search(f"key in ({', '.join(map(jql_string, chunk))})", "status,resolution"):
                ticket = self._ticket(raw)
                answered[ticket.key] = ticket
            found.update(answered)
            if set(answered) - set(chunk):  # answers under keys nobody asked for: moved issues
                for key in (k for k in chunk if k not in answered):
                    moved = self._follow(key)
                    if moved is not None:
                        found[key] = moved
        return {k: found.get(k) or Ticket(key=k, url=self._url(k), status="deleted") for k in keys}

    def _follow(self, key: str) -> Ticket | None:
        """The issue an old key leads to (Jira answers a moved issue's old key under its new key), or None
        when it is gone (404)."""
        try:
            with self._errors("get issue"):
                raw = self.client._get_json(f"issue/{segment(key)}", params={"fields": "status,resolution"})
        except JiraError as e:
            if e.status == 404:
                return None
            raise
        return self._ticket(raw)

    def close(self, ticket_key: str, resolution: str | None = None, *, wont_do: bool = False) -> Ticket:
        """Move the issue to done through its project's done transition, with `resolution` (default: the
        first of `wont_do_resolutions` for won't do, else Jira's default); nothing when it is done already."""
        cfg = self.config.for_key(ticket_key)
        if resolution is None and wont_do and cfg.wont_do_resolutions:
            resolution = cfg.wont_do_resolutions[0]
        with self._errors("transition"):
            current = self.statuses([ticket_key])[ticket_key]
            if current.status != "open":
                return current
            fields = {"resolution": {"name": resolution}} if resolution else None
            self.client.transition_issue(segment(ticket_key), cfg.done_transition, fields=fields)
        return self.statuses([ticket_key])[ticket_key]

    def reopen(self, ticket_key: str) -> Ticket:
        """Move a done issue back through the reopen transition; nothing when it is open."""
        cfg = self.config.for_key(ticket_key)
        with self._errors("transition"):
            current = self.statuses([ticket_key])[ticket_key]
            if current.status == "open":
                return current
            self.client.transition_issue(segment(ticket_key), cfg.reopen_transition)
        return self.statuses([ticket_key])[ticket_key]
