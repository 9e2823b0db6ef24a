"""Timeline source: what changed in the service's GitHub repositories around the incident, through PyGithub.

For each configured repository (the incident's first service's `service_repositories`, else
`repositories`), inside the window [incident start (else detection) - `before`, resolution]:

- deployments (`GET /repos/{owner}/{repo}/deployments`, newest first): kind `deploy`;
- merged pull requests into the default branch (`GET /repos/{owner}/{repo}/pulls?state=closed&sort=updated
  &direction=desc&base=<default branch>`): kind `change`, at `merged_at`;
- commits to the default branch (`GET /repos/{owner}/{repo}/commits?sha=<default>&since=&until=`): kind
  `commit`.

Every kind is one batched, paginated listing per repository (plus `GET /repos/{owner}/{repo}` for the
default branch), never one request per pull request; the newest-first listings stop at the first page that
reaches before the window, and at `max_pages` pages. The author is the person whose `github` handle is the
login, else the login. Errors become `GitHubError` exactly as for the GitHub tracker (5xx, 429 and rate-limit
403 are retryable, other 4xx are not).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar

import requests
from github import Github, GithubException
from pydantic import Field

from closeloop.integrations.base import TimelineSource, report_progress
from closeloop.integrations.github.client import github_client
from closeloop.integrations.github.settings import GitHubTimelineSettings
from closeloop.integrations.github.tracker import GitHubError, _wrap, repo_path
from closeloop.models import Incident, Person, TimelineEvent
from closeloop.timeline import incident_window

T = TypeVar("T")


class GitHubTimelineConfig(GitHubTimelineSettings):
    """`[timeline.github]` (GitHubTimelineSettings, whose defaults are the only ones) plus what comes from the
    environment and
    tuning the config file does not expose."""

    token: str = Field(default="", repr=False)



def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _first_line(text: str | None) -> str:
    return " ".join((text or "").strip().splitlines()[0].split()) if (text or "").strip() else ""


class GitHubTimelineSource(TimelineSource):
    name = "github"

    def __init__(self, config: GitHubTimelineConfig, people: dict[str, Person] | None = None) -> None:
        self.config = config
        self.logins = {p.handles["github"]: key for key, p in (people or {}).items() if p.handles.get("github")}
        self._client: Github | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Github:
        with self._lock:
            if self._client is None:
                self._client = github_client(self.config.base_url, self.config.token, timeout=self.config.timeout,
                                             per_page=self.config.page_size)
            return self._client

    def repositories_for(self, incident: Incident) -> list[str]:
        for service in incident.services[:1]:
            if service in self.config.service_repositories:
                return list(self.config.service_repositories[service])
        return list(self.config.repositories)

    def _bounded(self, items: Iterable[T]) -> Iterator[T]:
        """At most `max_pages` pages of a listing, reporting progress as it goes (PyGithub pages lazily)."""
        for n, item in enumerate(islice(items, self.config.max_pages * self.config.page_size)):
            if n % self.config.page_size == 0:
                report_progress(n)
            yield item

    def _actor(self, user: Any) -> str | None:
        login = getattr(user, "login", None) if user is not None else None
        return self.logins.get(login, login) if login else None

    def fetch(self, incident: Incident) -> list[TimelineEvent]:
        repos = self.repositories_for(incident)
        if not repos:
            return []
        try:
            start, end = incident_window(incident, before=self.config.slack_before, now=datetime.now(UTC))
        except ValueError as e:
            raise GitHubError(str(e), retryable=False) from None
        events: list[TimelineEvent] = []
        for full_name in repos:
            try:
                events += self._repository(full_name, start, end)
            except GitHubError:
                raise
            except (GithubException, requests.RequestException) as exc:
                raise _wrap(exc, f"timeline of {full_name}") from exc
        return events

    def _repository(self, full_name: str, start: datetime, end: datetime) -> list[TimelineEvent]:
        repo = self.client.get_repo(repo_path(full_name))
        branch = repo.default_branch
        events: list[TimelineEvent] = []
        if "deployments" in self.config.include:
            for d in self._bounded(repo.get_deployments()):
                at = _utc(d.created_at)
                if at is None or at > end:
                    continue
                if at < start:
                    break  # newest first: the rest is older still
                what = f"Deployment of {d.ref} ({d.sha[:7]}) to {d.environment} in {full_name}"
                events.append(TimelineEvent(at=at, source="github", kind="deploy",
                                            text=f"{what}: {d.description}" if d.description else what,
                                            actor=self._actor(d.creator), url=f"{repo.html_url}/deployments"))
        if "pulls" in self.config.include:
            for pr in self._bounded(repo.get_pulls(state="closed", sort="updated", direction="desc", base=branch)):
                updated = _utc(pr.updated_at)
                if updated is not None and updated < start:
                    break  # sorted by update, newest first; merged_at <= updated_at
                merged = _utc(pr.merged_at)
                if merged is None or not start <= merged <= end:
                    continue
                events.append(TimelineEvent(at=merged, source="github", kind="change",
                                            text=f"PR #{pr.number} merged into {full_name}@{branch}: {pr.title}",
                                            actor=self._actor(pr.user), url=pr.html_url))
        if "commits" in self.config.include:
            for c in self._bounded(repo.get_commits(sha=branch, since=start, until=end)):
                git = c.commit
                at = _utc(git.committer.date if git.committer else None) or _utc(git.author.date)
                if at is None or not start <= at <= end:
                    continue
                actor = self._actor(c.author) or (git.author.name if git.author else None)
                events.append(TimelineEvent(at=at, source="github", kind="commit",
                                            text=f"Commit {c.sha[:7]} to {full_name}@{branch}: "
                                                 f"{_first_line(git.message)}",
                                            actor=actor, url=c.html_url))
        return events
