"""The GitHub plugin's settings: `[trackers.github]` (and `[trackers.github.services.NAME]` overrides),
`[timeline.github]` and `[publishers.github]`. Every default is written here, once. The token comes only from the
environment: CLOSELOOP_GITHUB_TOKEN (one token for all three)."""

from __future__ import annotations

import re
import string
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from closeloop.durations import Duration

ENV_TOKEN = "CLOSELOOP_GITHUB_TOKEN"
ENV_WEBHOOK_SECRETS = "CLOSELOOP_GITHUB_WEBHOOK_SECRET"  # the ticket webhook's signing secrets, comma-separated
# GitHub's state reasons that close an issue without doing it: won't do, with the words closeloop shows.
WONT_DO_REASONS = {"not_planned": "not planned", "duplicate": "duplicate"}
TimelineKind = Literal["deployments", "pulls", "commits"]
TIMELINE_KINDS: tuple[TimelineKind, ...] = ("deployments", "pulls", "commits")
PublishMode = Literal["pull_request", "direct"]
# The names `[publishers.github] path` may use: the year and month the incident started (else when the lifecycle
# began), the postmortem's file-safe id (closeloop.ids.file_stem, as the built-in publisher names its files) and
# the incident's source.
PATH_FIELDS = ("year", "month", "stem", "source")
_FIELDS_TEXT = ", ".join("{" + f + "}" for f in PATH_FIELDS)
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


class GitHubPublisherSettings(_Strict):
    """`[publishers.github]`: the postmortem's Markdown as a file of a repository, proposed in a pull request
    (`mode = "pull_request"`) or committed straight to the base branch (`mode = "direct"`). The token comes only
    from CLOSELOOP_GITHUB_TOKEN (it needs contents and pull requests write access to `repo`)."""

    base_url: str = Field(default="https://api.github.com", pattern=r"^https?://",
                          description="the REST API's URL; GitHub Enterprise Server: https://HOST/api/v3")
    repo: str = Field(description="the repository the postmortems go to, owner/name")
    base_branch: str | None = Field(default=None, description="the branch they land on (default: the repository's "
                                    "default branch)")
    path: str = Field(default="postmortems/{year}/{stem}.md",
                      description="the file's path in the repository, a template of PATH_FIELDS")
    mode: PublishMode = Field(default="pull_request", description="pull_request: a branch per postmortem and one "
                              "pull request to the base branch; direct: commits on the base branch")
    reviewers: list[str] = Field(default_factory=list, description="GitHub logins asked to review the pull request")
    labels: list[str] = Field(default_factory=list, description="labels of the pull request")
    timeout: float = Field(default=30.0, gt=0, description="seconds per HTTP request")

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not _REPO.match(value):
            raise ValueError(f"{value!r} is not a repository name like owner/name (e.g. acme/postmortems)")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        try:
            parsed = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(value) if name is not None]
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a path template: {exc}") from None
        if any(spec or conv for _, spec, conv in parsed):
            raise ValueError(f"{value!r}: fields take no format ({{year}}, not {{year:...}})")
        names = [name for name, _, _ in parsed]
        unknown = sorted({n for n in names if n not in PATH_FIELDS})
        if unknown:
            raise ValueError(f"unknown field {{{unknown[0]}}} in {value!r} (known: {_FIELDS_TEXT})")
        if "stem" not in names:
            raise ValueError(f"{value!r} must contain {{stem}}: without it every postmortem is the same file")
        segments = value.split("/")
        if value.startswith("/") or value.endswith("/") or any(s in ("", ".", "..") for s in segments):
            raise ValueError(f"{value!r} must be a relative path of the repository (no leading or trailing '/', "
                             "no empty, '.' or '..' parts)")
        return value

    @model_validator(mode="after")
    def _pull_request_only(self) -> GitHubPublisherSettings:
        if self.mode == "direct" and (self.reviewers or self.labels):
            raise ValueError('reviewers and labels belong to pull requests: they need mode = "pull_request"')
        return self
