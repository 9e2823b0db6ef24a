"""Configuration: one TOML or YAML file (policies, services, people) plus environment variables for
where things run. Validated at start; every problem is reported as one clear line."""

from __future__ import annotations

import os
import re
import string
import tomllib
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from closeloop.directory import Directory, DirectoryError, DirectorySettings, load_directory
from closeloop.durations import Duration
from closeloop.planning import policy_for
from closeloop.policy import ROLES

ENV_CONFIG = "CLOSELOOP_CONFIG"


class ConfigError(Exception):
    """A configuration problem, worded for the person who wrote the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TemporalSettings(_Strict):
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "closeloop"
    ui_port: int = 8233


class StoreSettings(_Strict):
    url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite in the data dir")


class WebSettings(_Strict):
    """`[web]`: the HTTP app (`closeloop serve`). Its secrets (API tokens, webhook secrets) come only from
    the environment (closeloop/web/settings.py), never from this file."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: int = Field(default=256 * 1024, ge=1, description="larger request bodies get 413")


class PersonConfig(_Strict):
    name: str
    email: str
    timezone: str = "UTC"
    manager: str | None = None
    handles: dict[str, str] = Field(default_factory=dict)


class ServiceConfig(_Strict):
    owner: str | None = None
    reviewers: list[str] = Field(default_factory=list)
    policy: dict[str, Any] = Field(default_factory=dict)
    severity: dict[str, dict[str, Any]] = Field(default_factory=dict)


class JiraServiceSettings(_Strict):
    """`[trackers.jira.services.NAME]`: what differs for one service's action items; unset keys inherit
    `[trackers.jira]`."""

    project: str | None = None
    issue_type: str | None = None
    priorities: dict[str, str] | None = None
    labels: list[str] | None = None
    components: list[str] | None = None
    due_date_field: str | None = None
    custom_fields: dict[str, Any] | None = None
    done_transition: str | None = None
    reopen_transition: str | None = None
    wont_do_resolutions: list[str] | None = None


class JiraSettings(_Strict):
    """`[trackers.jira]`: Jira Cloud through the `jira` library. The account's e-mail and API token come only
    from the environment: CLOSELOOP_JIRA_EMAIL and CLOSELOOP_JIRA_API_TOKEN."""

    url: str
    project: str
    issue_type: str = "Task"
    priorities: dict[str, str] = Field(default_factory=lambda: {"P1": "Highest", "P2": "High", "P3": "Medium",
                                                                "P4": "Low"})
    labels: list[str] = Field(default_factory=lambda: ["closeloop"])
    due_date_field: str = "duedate"
    done_transition: str = "Done"
    wont_do_resolutions: list[str] = Field(default_factory=lambda: ["Won't Do", "Duplicate", "Cannot Reproduce"])
    timeout: float = 30.0
    components: list[str] = Field(default_factory=list, description="component names set on every issue")
    custom_fields: dict[str, Any] = Field(default_factory=dict, description="field id -> value; strings may use "
                                          "{item_id}, {service}, {severity}, ... (TICKET_TEMPLATE_FIELDS)")
    reopen_transition: str = "To Do"
    services: dict[str, JiraServiceSettings] = Field(default_factory=dict,
                                                     description="per-service overrides of the keys above")


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


# The names a tracker's templated values (Jira custom_fields) may use, e.g. "{service}-{priority}".
TICKET_TEMPLATE_FIELDS = ("item_id", "postmortem_id", "incident", "incident_title", "severity", "service",
                          "priority", "kind", "owner", "due")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")


def _template_names(value: Any) -> list[str]:
    """The {names} a templated value uses (strings anywhere inside lists and tables); '?' when malformed."""
    if isinstance(value, str):
        try:
            return [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        except ValueError:
            return ["?"]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _template_names(v)]
    if isinstance(value, list):
        return [n for v in value for n in _template_names(v)]
    return []


class SyncSettings(_Strict):
    """`[sync]`: the ticket reconciliation sweep (the `closeloop-ticket-sync` Schedule, applied at worker
    start): how often every tracked item's ticket is compared with the item."""

    every: Duration = Field(default=timedelta(minutes=5), description="the sweep's interval (at least 1m)")

    @field_validator("every")
    @classmethod
    def _every(cls, v: timedelta) -> timedelta:
        if v < timedelta(minutes=1):
            raise ValueError("must be at least 1m (each sweep asks every tracker about every open ticket)")
        return v


class TrackersConfig(_Strict):
    jira: JiraSettings | None = None
    github: GitHubSettings | None = None

    def problems(self) -> list[str]:
        """Cross-field checks of the tracker sections (one line each)."""
        problems: list[str] = []
        if self.jira is not None:
            for where, fields in [("trackers.jira", self.jira.custom_fields),
                                  *((f"trackers.jira.services.{name}", s.custom_fields or {})
                                    for name, s in self.jira.services.items())]:
                for fid, value in fields.items():
                    bad = [n for n in _template_names(value) if n not in TICKET_TEMPLATE_FIELDS]
                    if bad:
                        problems.append(f"{where}.custom_fields.{fid}: unknown template field {{{bad[0]}}} (known: "
                                        f"{', '.join(TICKET_TEMPLATE_FIELDS)})")
        if self.github is not None:
            repos = [("trackers.github.repo", self.github.repo),
                     *((f"trackers.github.services.{name}.repo", s.repo) for name, s in self.github.services.items())]
            for where, repo in repos:
                if repo is not None and not _REPO.match(repo):
                    problems.append(f"{where}: {repo!r} is not a repository name like owner/name")
        return problems


# --------------------------------------------------------------------------- timeline sources

BUILTIN_TIMELINE_SOURCES = ("incident", "notes", "alertmanager")
DEFAULT_REACTIONS = {"rotating_light": "detection", "eyes": "acknowledge", "adhesive_bandage": "mitigation",
                     "white_check_mark": "resolution"}


class PagerDutyTimelineSettings(_Strict):
    """`[timeline.pagerduty]`: an incident's log entries (`GET /incidents/{id}/log_entries`). The REST API
    token comes only from CLOSELOOP_PAGERDUTY_TOKEN."""

    url: str = "https://api.pagerduty.com"
    page_size: int = Field(default=100, ge=1, le=1000, description="`limit` per request")
    max_pages: int = Field(default=50, ge=1)
    timeout: float = Field(default=30.0, gt=0)


class GitHubTimelineSettings(_Strict):
    """`[timeline.github]`: deployments, merged pull requests and default-branch commits of the repositories,
    inside [incident start - slack_before, resolved]. The token comes only from CLOSELOOP_GITHUB_TOKEN."""

    base_url: str = "https://api.github.com"
    repositories: list[str] = Field(default_factory=list, description="for every service")
    service_repositories: dict[str, list[str]] = Field(default_factory=dict, description="service -> repositories")
    slack_before: Duration = timedelta(hours=2)
    include: list[Literal["deployments", "pulls", "commits"]] = Field(
        default_factory=lambda: ["deployments", "pulls", "commits"])
    page_size: int = Field(default=100, ge=1, le=100)
    max_pages: int = Field(default=10, ge=1, description="per repository and kind; the listings are newest first")
    timeout: float = Field(default=30.0, gt=0)


class SlackTimelineSettings(_Strict):
    """`[timeline.slack]`: the incident channel's history (`conversations.history`). The channel is the
    service's (`service_channels`), else `channel`, else the incident link that is a Slack channel. The bot
    token comes only from CLOSELOOP_SLACK_TOKEN."""

    base_url: str = "https://slack.com/api/"
    channel: str | None = None
    service_channels: dict[str, str] = Field(default_factory=dict, description="service -> channel id")
    reactions: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_REACTIONS),
                                      description="reaction name -> timeline kind (a key moment)")
    slack_before: Duration = timedelta(minutes=30)
    page_size: int = Field(default=200, ge=1, le=999)
    max_pages: int = Field(default=50, ge=1)
    timeout: float = Field(default=30.0, gt=0)


class AlertmanagerTimelineSettings(_Strict):
    """`[timeline.alertmanager]`: the alerts that the Alertmanager webhook stored for the incident."""

    key_moments: bool = Field(default=True, description="the first firing alert marks the detection")


class JiraTimelineSettings(_Strict):
    """`[timeline.jira]`: Jira issues that mention the incident's id or carry `label` ("{external_id}" and
    "{source}" are filled in). `url` defaults to [trackers.jira]; the account is CLOSELOOP_JIRA_EMAIL and
    CLOSELOOP_JIRA_API_TOKEN."""

    url: str | None = None
    project: str | None = None
    label: str | None = "incident-{external_id}"
    mention: bool = Field(default=True, description="also issues whose text mentions the incident id")
    page_size: int = Field(default=50, ge=1, le=100)
    timeout: float = Field(default=30.0, gt=0)


class TimelineConfig(_Strict):
    pagerduty: PagerDutyTimelineSettings | None = None
    github: GitHubTimelineSettings | None = None
    slack: SlackTimelineSettings | None = None
    alertmanager: AlertmanagerTimelineSettings | None = None
    jira: JiraTimelineSettings | None = None


class Config(_Strict):
    source: str = Field(default="<built-in>", exclude=True)
    data_dir: Path = Path(".closeloop")
    default_owner: str | None = None
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    trackers: TrackersConfig = Field(default_factory=TrackersConfig)
    timeline: TimelineConfig = Field(default_factory=TimelineConfig)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    policy: dict[str, Any] = Field(default_factory=dict)
    severity: dict[str, dict[str, Any]] = Field(default_factory=dict)
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    people: dict[str, PersonConfig] = Field(default_factory=dict)
    directory: DirectorySettings = Field(default_factory=DirectorySettings)

    _directory: Directory | None = PrivateAttr(default=None)

    # ------------------------------------------------------------------ derived

    @property
    def db_url(self) -> str:
        return self.store.url or f"sqlite:///{(self.data_dir / 'closeloop.db').resolve()}"

    def people_directory(self) -> Directory:
        """The people directory from its source (`[directory]`), loaded once; DirectoryError when unreadable."""
        if self._directory is None:
            self._directory = load_directory(self.directory, self.people)
        return self._directory

    # ------------------------------------------------------------------ validation

    def check(self) -> None:
        """Cross-field checks that pydantic cannot do alone. Raises ConfigError with one line."""
        problems: list[str] = []
        try:
            people = self.people_directory()
        except DirectoryError as e:
            raise ConfigError(f"{self.source}: {e}") from None
        problems += people.problems()
        if self.default_owner and self.default_owner not in people:
            problems.append(f"default_owner: unknown person {self.default_owner!r}")
        for name, svc in self.services.items():
            if svc.owner and svc.owner not in people:
                problems.append(f"services.{name}.owner: unknown person {svc.owner!r}")
            for r in svc.reviewers:
                if r not in people:
                    problems.append(f"services.{name}.reviewers: unknown person {r!r}")
        severities = set(self.severity) | {s for svc in self.services.values() for s in svc.severity} | {"SEV3"}
        for sev in sorted(severities):
            for service in [None, *self.services]:
                where = f"policy for severity {sev}" + (f", service {service}" if service else "")
                try:
                    policy = policy_for(self, sev, service)
                except ValidationError as e:
                    problems.append(f"{where}: {_first_error(e)}")
                    continue
                for step in policy.escalation:
                    if step.notify not in ROLES and step.notify not in people:
                        problems.append(f"{where}: escalation target {step.notify!r} is neither a role nor a person")
                for r in policy.reviewers:
                    if r not in people:
                        problems.append(f"{where}: unknown reviewer {r!r}")
                if policy.tracker != "local" and getattr(self.trackers, policy.tracker, None) is None:
                    problems.append(f"{where}: tracker {policy.tracker!r} has no [trackers.{policy.tracker}] section")
                problems += [f"{where}: {p}" for p in self._timeline_problems(policy.timeline_sources)]
        problems += self.trackers.problems()
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ConfigError(f"{self.source}: {problems[0]}{more}")

    def _timeline_problems(self, names: list[str]) -> list[str]:
        problems = []
        for name in names:
            if name in ("incident", "notes"):
                continue
            if name not in TimelineConfig.model_fields:
                known = [*BUILTIN_TIMELINE_SOURCES[:2], *TimelineConfig.model_fields]
                problems.append(f"unknown timeline source {name!r} (known: {', '.join(known)})")
            elif name != "alertmanager" and getattr(self.timeline, name) is None:
                problems.append(f"timeline source {name!r} has no [timeline.{name}] section")
            elif name == "jira" and self.timeline.jira and not (self.timeline.jira.url or self.trackers.jira):
                problems.append("timeline source 'jira' needs [timeline.jira] url or a [trackers.jira] section")
        return problems


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    return f"{loc}: {err['msg']}" if loc else err["msg"]


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'TOML'}: "
                          f"{str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table/mapping")
    return data


def builtin_config_text() -> str:
    return resources.files("closeloop").joinpath("examples/closeloop.toml").read_text()


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    for name in ("closeloop.toml", "closeloop.yaml", "closeloop.yml"):
        if Path(name).exists():
            return Path(name)
    return None


def load_config(path: str | os.PathLike[str] | None = None, *, env: dict[str, str] | None = None) -> Config:
    """Load and validate the config. Environment variables override where things run:
    CLOSELOOP_TEMPORAL_ADDRESS, CLOSELOOP_NAMESPACE, CLOSELOOP_TASK_QUEUE, CLOSELOOP_DB_URL, CLOSELOOP_DATA_DIR,
    CLOSELOOP_UI_PORT, CLOSELOOP_WEB_HOST, CLOSELOOP_WEB_PORT."""
    env = os.environ if env is None else env
    found = find_config_path(path)
    if found is None:
        data, source = tomllib.loads(builtin_config_text()), "<built-in example config>"
    else:
        data, source = _read(found), str(found)
    overrides = {
        ("temporal", "address"): env.get("CLOSELOOP_TEMPORAL_ADDRESS"),
        ("temporal", "namespace"): env.get("CLOSELOOP_NAMESPACE"),
        ("temporal", "task_queue"): env.get("CLOSELOOP_TASK_QUEUE"),
        ("store", "url"): env.get("CLOSELOOP_DB_URL"),
        ("web", "host"): env.get("CLOSELOOP_WEB_HOST"),
        ("web", "port"): env.get("CLOSELOOP_WEB_PORT"),
    }
    for (section, key), value in overrides.items():
        if value:
            data.setdefault(section, {})[key] = value
    if env.get("CLOSELOOP_UI_PORT"):
        data.setdefault("temporal", {})["ui_port"] = env["CLOSELOOP_UI_PORT"]
    if env.get("CLOSELOOP_DATA_DIR"):
        data["data_dir"] = env["CLOSELOOP_DATA_DIR"]
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_first_error(e)}") from None
    config.source = source
    config.check()
    return config
