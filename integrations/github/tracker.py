"""Action items as GitHub issues, through PyGithub (REST API).

How a ticket is found again (the marker). Every issue closeloop opens carries
  - the label `closeloop` (plus the configured and requested labels), and
  - a hidden HTML comment on the last line of the body: `<!-- closeloop-marker: <marker> -->`.
`find_by_marker` searches `repo:o/r is:issue in:body "closeloop-marker: <marker>"` and confirms a hit by
the exact comment in the body (search matches phrases loosely). GitHub's search index lags issue creation,
so when search confirms nothing, the newest `closeloop`-labelled issues (one page, created desc) are
scanned as well: an issue created a moment ago by an attempt whose answer was lost is found there. When
the search itself is refused (422), all `closeloop` issues are scanned.
So `ensure_ticket` after a lost create response finds the issue that was created and opens no second one.

Ticket keys are `owner/repo#N`; the URL is the issue's `html_url`.

Per service: `GitHubConfig.services` maps a service to its repository, labels and milestone
(`[trackers.github.services.NAME]`); `ensure_ticket` looks for the marker in the request's service's
repository and creates there; `find_by_marker` alone looks in every configured repository. A milestone is
given by number, or by title: listed once per repository and cached.

Pacing: GitHub's secondary rate limit allows about 80 content-creating requests a minute. Every issue and
comment created first takes a slot from `store.rate_limits.take_rate_slot` (bucket per base URL,
`content_per_minute` per minute, shared by all worker processes on the database); over the limit, the call
raises a retryable `GitHubError` with `retry_after` = the seconds until a slot frees, which the activity turns
into Temporal's next retry delay. Nothing sleeps.

Comments are idempotent the same way: the body ends with `<!-- closeloop-comment: <idempotency key> -->`,
and `comment` first reads the issue's comments and adds nothing when one carries the key.

`statuses` never asks per issue: for each repository among the keys it lists the issues labelled
`closeloop` (`state=all`, `per_page=100`, following `Link` pages), so it costs ceil(closeloop issues in
the repository / 100) requests. open -> `open`; closed as `not_planned` (or `duplicate`) -> `wont_do`;
any other closed -> `done`; a key the listing does not return -> `deleted`. That includes an issue
transferred to another repository: GitHub lists it under its new repository and number only (and answers
`GET` of the old one with 301 to the new place), so a transferred ticket reads as `deleted`, not moved.
`request_count` counts the requests `statuses` makes (repository look-ups and listing pages).

Errors: `GithubException` and `requests` failures become `GitHubError` (an `IntegrationError`):
retryable for 5xx, 408, 429, 403 that is a rate limit (`x-ratelimit-remaining: 0`, `Retry-After`, or a
rate-limit message), connection failures and timeouts, with `retry_after` from Retry-After or
`x-ratelimit-reset`; not retryable for other 4xx (401, 403, 404, 410, 422). PyGithub is built with
`retry=None` (no urllib3 retries) so the library never re-sends a POST whose answer was lost: retries
belong to the activity's retry policy, where `ensure_ticket` makes them safe.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import requests
import structlog
from github import Github, GithubException
from github.Issue import Issue
from github.Repository import Repository
from pydantic import Field

from closeloop.integrations.base import HttpIntegrationError, Ticket, TicketRequest, Tracker
from closeloop.integrations.github.client import github_client
from closeloop.integrations.github.settings import WONT_DO_REASONS, GitHubSettings
from closeloop.integrations.urls import segment
from closeloop.metrics import TRACKER_CALLS, TRACKER_RATE_LIMIT_WAITS
from closeloop.models import Person

if TYPE_CHECKING:
    from closeloop.store.store import Store

log = structlog.get_logger("closeloop.github")
CONTENT_WINDOW = timedelta(minutes=1)

MARKER_LABEL = "closeloop"
MARKER_PREFIX = "closeloop-marker: "
COMMENT_PREFIX = "closeloop-comment: "
_KEY = re.compile(r"^(?P<repo>[^/\s#]+/[^/\s#]+)#(?P<number>\d+)$")


def marker_tag(marker: str) -> str:
    return f"<!-- {MARKER_PREFIX}{_safe(marker)} -->"


def comment_tag(key: str) -> str:
    return f"<!-- {COMMENT_PREFIX}{_safe(key)} -->"


def _safe(text: str) -> str:
    return text.replace("--", "- -").replace("\n", " ")  # nothing that ends the HTML comment early


def repo_path(full_name: str) -> str:
    """`owner/repo` as PyGithub's get_repo puts it into `/repos/{full_name}`: two quoted path segments."""
    return "/".join(segment(part) for part in full_name.split("/", 1))


def ticket_key(repo: str, number: int) -> str:
    return f"{repo}#{number}"


def parse_key(key: str) -> tuple[str, int]:
    m = _KEY.match(key.strip())
    if not m:
        raise GitHubError(f"not a GitHub issue key (owner/repo#N): {key!r}", retryable=False)
    return m.group("repo"), int(m.group("number"))


class GitHubError(HttpIntegrationError):
    pass


class GitHubConfig(GitHubSettings):
    """`[trackers.github]` (GitHubSettings, whose defaults are the only ones) plus the token, which comes from the
    environment, and tuning the config file does not expose."""

    token: str = Field(default="", repr=False)  # never in a repr or a log line
    page_size: int = 100  # per_page for listings (GitHub caps it at 100)
    recent_scan: int = 100  # newest closeloop issues scanned when search confirms no marker
    seconds_between_requests: float | None = None  # PyGithub's own throttling (off: the activity paces)
    seconds_between_writes: float | None = None

    def for_service(self, service: str | None) -> GitHubConfig:
        """The settings for one service's action items: `services[service]` over the defaults."""
        override = self.services.get(service or "")
        overrides = override.model_dump(exclude_none=True) if override is not None else {}
        return self.model_copy(update={**overrides, "services": {}}) if overrides else self

    def all_repos(self) -> list[str]:
        """The default repository, then every service's, once each."""
        repos = [self.repo, *(o.repo for o in self.services.values())]
        return list(dict.fromkeys(r for r in repos if r))


def _is_pull(issue: Issue) -> bool:
    # the listed JSON as served: `issue.pull_request` (and `raw_data`) would GET each issue again to
    # complete an attribute GitHub leaves out of plain issues
    return bool((getattr(issue, "_rawData", None) or {}).get("pull_request"))


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for k, v in dict(headers).items():
        if k.lower() == name.lower():
            return str(v)
    return None


def _retry_after(headers: Any) -> float | None:
    value = _header(headers, "Retry-After")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    if _header(headers, "x-ratelimit-remaining") == "0":
        reset = _header(headers, "x-ratelimit-reset")
        try:
            return max(0.0, float(reset) - time.time()) if reset is not None else None
        except ValueError:
            return None
    return None


def _wrap(exc: Exception, what: str) -> GitHubError:
    if isinstance(exc, GithubException):
        status = exc.status
        headers = exc.headers or {}
        retry_after = _retry_after(headers)
        message = str((exc.data or {}).get("message", "") if isinstance(exc.data, dict) else exc.data or "")
        rate_limited = status == 403 and (retry_after is not None or "rate limit" in message.lower())
        retryable = GitHubError.is_retryable(status, rate_limited=rate_limited)
        return GitHubError(f"GitHub {what}: HTTP {status}: {message}"[:1000], retryable=retryable, status=status,
                           retry_after=retry_after)
    return GitHubError(f"GitHub {what}: {type(exc).__name__}: {exc}"[:1000], retryable=True)


@contextmanager
def github_errors(what: str, refine: Callable[[GitHubError], GitHubError] | None = None) -> Iterator[None]:
    """PyGithub's and requests' errors while doing `what`, as one GitHubError: its status, whether a retry can help,
    how long GitHub asked to wait. A GitHubError passes as it is. `refine` gives the error raised instead (the
    publisher adds its hints). The original exception is not chained: its text is in the message, and nothing
    else of it (a URL, a header) travels with the activity's failure."""
    try:
        yield
    except GitHubError:
        raise
    except (GithubException, requests.RequestException) as exc:
        error = _wrap(exc, what)
        raise (refine(error) if refine else error) from None


class GitHubTracker(Tracker):
    name = "github"

    def __init__(self, config: GitHubConfig, people: dict[str, Person] | None = None, *, store: Store | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        """`store` paces content creation across every worker (`take_rate_slot`); without one nothing is paced.
        `clock` is what the pacing calls "now" (default: the wall clock)."""
        self.config = config
        self.people = people or {}
        self.store = store
        self.clock = clock
        self._client: Github | None = None
        self._repos: dict[str, Repository] = {}
        self._milestones: dict[tuple[str, str], int] = {}
        self._milestone_lock = threading.Lock()
        self._lock = threading.Lock()
        self.request_count = 0

    # ------------------------------------------------------------------ plumbing
    @property
    def client(self) -> Github:
        with self._lock:
            if self._client is None:
                self._client = github_client(
                    self.config.base_url, self.config.token, timeout=self.config.timeout,
                    per_page=self.config.page_size, seconds_between_requests=self.config.seconds_between_requests,
                    seconds_between_writes=self.config.seconds_between_writes,
                )
            return self._client

    def repo(self, full_name: str | None = None) -> Repository:
        name = full_name or self.config.repo
        if name not in self._repos:
            with self._errors(f"get repository {name}"):
                self._repos[name] = self.client.get_repo(repo_path(name))
        return self._repos[name]

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        TRACKER_CALLS.labels("github").inc()

        def counted(error: GitHubError) -> GitHubError:
            if error.retry_after is not None:
                TRACKER_RATE_LIMIT_WAITS.labels("github").inc()
            return error

        with github_errors(what, counted):
            yield

    def _pace(self, what: str) -> None:
        """Count one content-creating request (an issue or a comment) against GitHub's secondary limit, shared
        by every worker through the store. Over the limit: a retryable error that says how long to wait (the
        activity's retry waits it, nothing sleeps here)."""
        if self.store is None:
            return
        limit = self.config.content_per_minute
        wait = self.store.rate_limits.take_rate_slot(f"github:content:{self.config.base_url.rstrip('/')}",
                                                     limit=limit, window=CONTENT_WINDOW,
                                                     now=self.clock() if self.clock else None)
        if wait > 0:
            TRACKER_RATE_LIMIT_WAITS.labels("github").inc()
            log.info("github_content_paced", what=what, limit_per_minute=limit, retry_after=round(wait, 3))
            raise GitHubError(f"GitHub {what}: {limit} issues/comments a minute reached; retry in {wait:.1f}s",
                              retryable=True, retry_after=wait)

    def _milestone(self, repo: Repository, name: str, value: int | str | None) -> int | None:
        """The milestone number: given, or looked up by title once per repository (then cached)."""
        if value is None or isinstance(value, int) or str(value).isdigit():
            return int(value) if value is not None else None
        with self._milestone_lock:  # concurrent activities: one listing
            if (name, value) not in self._milestones:
                with self._errors("list milestones"):
                    for m in repo.get_milestones(state="all"):
                        self._milestones.setdefault((name, m.title), m.number)
            number = self._milestones.get((name, value))
        if number is None:
            log.warning("github_milestone_not_found", repo=name, milestone=value)
        return number

    def _login(self, person: Person) -> str | None:
        known = self.people.get(person.key, person)
        return known.handles.get("github") or person.handles.get("github")

    def _ticket(self, repo: str, issue: Issue) -> Ticket:
        if issue.state == "closed":
            reason = issue.state_reason or "completed"
            status = "wont_do" if reason in WONT_DO_REASONS else "done"
        else:
            reason, status = "", "open"
        return Ticket(key=ticket_key(repo, issue.number), url=issue.html_url, status=status, resolution=reason)

    def _marked(self, issue: Issue, marker: str) -> bool:
        return not _is_pull(issue) and marker_tag(marker) in (issue.body or "")

    # ------------------------------------------------------------------ Tracker
    def find_by_marker(self, marker: str) -> Ticket | None:
        """Look in the default repository, then in every service's."""
        for name in self.config.all_repos():
            found = self._find(marker, name)
            if found:
                return found
        return None

    def ensure_ticket(self, request: TicketRequest) -> Ticket:
        """Look in the repository the request's service opens issues in, then create there."""
        return self._find(request.marker, self.config.for_service(request.service).repo) or self.create(request)

    def _find(self, marker: str, name: str) -> Ticket | None:
        repo = self.repo(name)
        query = f'repo:{name} is:issue in:body "{MARKER_PREFIX}{_safe(marker)}"'
        hits: list[Issue] = []
        searched = True
        with self._errors("search issues"):
            try:
                hits = [i for i in self.client.search_issues(query) if self._marked(i, marker)]
            except GithubException as exc:
                if exc.status != 422:
                    raise
                searched = False
            if not hits:
                listing = repo.get_issues(state="all", labels=[MARKER_LABEL], sort="created", direction="desc")
                limit = self.config.recent_scan if searched else None
                for n, issue in enumerate(listing):
                    if limit is not None and n >= limit:
                        break
                    if self._marked(issue, marker):
                        hits.append(issue)
        if not hits:
            return None
        return self._ticket(name, min(hits, key=lambda i: i.number))

    def create(self, request: TicketRequest) -> Ticket:
        cfg = self.config.for_service(request.service)
        repo = self.repo(cfg.repo)
        labels = list(dict.fromkeys([MARKER_LABEL, *cfg.labels, *request.labels]))
        body = f"{request.body.rstrip()}\n\n{marker_tag(request.marker)}"
        kwargs: dict[str, Any] = {"title": request.title[:256], "body": body, "labels": labels}
        login = self._login(request.assignee)
        if login:
            kwargs["assignees"] = [login]
        number = self._milestone(repo, cfg.repo, cfg.milestone)
        self._pace("create issue")
        with self._errors("create issue"):
            if number is not None:
                kwargs["milestone"] = repo.get_milestone(number)  # lazy: no request
            issue = repo.create_issue(**kwargs)
        return self._ticket(cfg.repo, issue)

    def comment(self, ticket_key: str, body: str, idempotency_key: str) -> None:
        name, number = parse_key(ticket_key)
        tag = comment_tag(idempotency_key)
        with self._errors("comment"):
            issue = self.repo(name).get_issue(number)
            if any(tag in (c.body or "") for c in issue.get_comments()):
                return
            self._pace("comment")
            issue.create_comment(f"{body.rstrip()}\n\n{tag}")

    def statuses(self, ticket_keys: list[str]) -> dict[str, Ticket]:
        keys = list(dict.fromkeys(ticket_keys))
        wanted: dict[str, set[int]] = {}
        for key in keys:
            name, number = parse_key(key)
            wanted.setdefault(name, set()).add(number)
        found: dict[str, Ticket] = {}
        for name, numbers in wanted.items():
            self.request_count += name not in self._repos
            repo = self.repo(name)
            listed = 0
            with self._errors("list issues"):
                for issue in repo.get_issues(state="all", labels=[MARKER_LABEL]):
                    listed += 1
                    if issue.number in numbers and not _is_pull(issue):
                        found[ticket_key(name, issue.number)] = self._ticket(name, issue)
            self.request_count += max(1, -(-listed // self.config.page_size))
        base = self.config.base_url.rstrip("/")
        for key in keys:
            if key not in found:
                name, number = parse_key(key)
                found[key] = Ticket(key=key, url=f"{base}/repos/{name}/issues/{number}", status="deleted")
        return {k: found[k] for k in keys}

    def close(self, ticket_key: str, resolution: str | None = None, *, wont_do: bool = False) -> Ticket:
        """Close the issue as `completed` or, for won't do, `not_planned` (or the state_reason given);
        nothing when it is closed already."""
        name, number = parse_key(ticket_key)
        reason = resolution or ("not_planned" if wont_do else "completed")
        with self._errors("close issue"):
            issue = self.repo(name).get_issue(number)
            if issue.state != "closed":
                issue.edit(state="closed", state_reason=reason)
        return self._ticket(name, issue)

    def reopen(self, ticket_key: str) -> Ticket:
        """Open a closed issue again (state_reason `reopened`); nothing when it is open."""
        name, number = parse_key(ticket_key)
        with self._errors("reopen issue"):
            issue = self.repo(name).get_issue(number)
            if issue.state == "closed":
                issue.edit(state="open")
        return self._ticket(name, issue)
