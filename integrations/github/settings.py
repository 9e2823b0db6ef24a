"""The GitHub plugin's settings: `[trackers.github]` (and `[trackers.github.services.NAME]` overrides) and
`[timeline.github]`. Every default is written here, once. The token comes only from the environment:
CLOSELOOP_GITHUB_TOKEN."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from closeloop.durations import Duration

ENV_TOKEN = "CLOSELOOP_GITHUB_TOKEN"
ENV_WEBHOOK_SECRETS = "CLOSELOOP_GITHUB_WEBHOOK_SECRET"  # the ticket webhook's signing secrets, comma-separated
# GitHub's state reasons that close an issue without doing it: won't do, with the words closeloop shows.
WONT_DO_REASONS = {"not_planned": "not planned", "duplicate": "duplicate"}
TimelineKind = Literal["deployments", "pulls", "commits"]
TIMELINE_KINDS: tuple[TimelineKind, ...] = ("deployments", "pulls", "commits")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GitHubServiceSettings(_Strict):
    """`[trackers.github.services.NAME]`: one service's repository (and labels, milestone); unset keys inherit."""

    repo: str | None = None
    labels: list[str] | None = None
    milestone: str | int | None = None


class GitHubSettings(_Strict):
    """`[trackers.github]`: GitHub issues through PyGithub. The token comes only from the environment:
    CLOSELOOP_GITHUB_TOKEN."""

    base_url: str = "https://api.github.com"
    repo: str = Field(description="default repository, owner/name")
    labels: list[str] = Field(default_factory=list, description="added to every issue besides `closeloop`")
    milestone: str | int | None = Field(default=None, description="milestone title (looked up once) or number")
    content_per_minute: int = Field(default=80, ge=1, description="issues + comments per minute, all workers")
    timeout: float = 30.0
    services: dict[str, GitHubServiceSettings] = Field(default_factory=dict)


class GitHubTimelineSettings(_Strict):
    """`[timeline.github]`: deployments, merged pull requests and default-branch commits of the repositories,
    inside [incident start - slack_before, resolved]. The token comes only from CLOSELOOP_GITHUB_TOKEN."""

    base_url: str = "https://api.github.com"
    repositories: list[str] = Field(default_factory=list, description="for every service")
    service_repositories: dict[str, list[str]] = Field(default_factory=dict, description="service -> repositories")
    slack_before: Duration = timedelta(hours=2)
    include: list[TimelineKind] = Field(default_factory=lambda: list(TIMELINE_KINDS))
    page_size: int = Field(default=100, ge=1, le=100)
    max_pages: int = Field(default=10, ge=1, description="per repository and kind; the listings are newest first")
    timeout: float = Field(default=30.0, gt=0)


def repo_problems(settings: GitHubSettings) -> list[str]:
    """Repository names that are not owner/name, one line each."""
    repos = [("trackers.github.repo", settings.repo),
             *((f"trackers.github.services.{name}.repo", s.repo) for name, s in settings.services.items())]
    return [f"{where}: {repo!r} is not a repository name like owner/name"
            for where, repo in repos if repo is not None and not _REPO.match(repo)]
