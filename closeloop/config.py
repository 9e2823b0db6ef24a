"""Configuration: one TOML or YAML file (policies, services, people) plus environment variables for
where things run. Validated at start; every problem is reported as one clear line."""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from closeloop.models import Incident, Person, Plan
from closeloop.policy import ROLES, Policy, deep_merge

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


class TrackersConfig(_Strict):
    jira: JiraSettings | None = None


class Config(_Strict):
    source: str = Field(default="<built-in>", exclude=True)
    data_dir: Path = Path(".closeloop")
    default_owner: str | None = None
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    trackers: TrackersConfig = Field(default_factory=TrackersConfig)
    policy: dict[str, Any] = Field(default_factory=dict)
    severity: dict[str, dict[str, Any]] = Field(default_factory=dict)
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    people: dict[str, PersonConfig] = Field(default_factory=dict)

    # ------------------------------------------------------------------ derived

    @property
    def db_url(self) -> str:
        return self.store.url or f"sqlite:///{(self.data_dir / 'closeloop.db').resolve()}"

    def person(self, key: str) -> Person | None:
        p = self.people.get(key)
        return Person(key=key, **p.model_dump()) if p else None

    def policy_for(self, severity: str, service: str | None) -> Policy:
        raw = deep_merge(self.policy, self.severity.get(severity, {}))
        svc = self.services.get(service) if service else None
        if svc:
            raw = deep_merge(raw, svc.policy)
            raw = deep_merge(raw, svc.severity.get(severity, {}))
        return Policy.model_validate(raw)

    def plan_for(self, incident: Incident, postmortem_id: str) -> Plan:
        service = incident.services[0] if incident.services else None
        policy = self.policy_for(incident.severity, service)
        svc = self.services.get(service) if service else None
        owner = next(
            (
                k
                for k in (incident.commander, svc.owner if svc else None, self.default_owner)
                if k and k in self.people
            ),
            None,
        )
        if owner is None:
            raise ConfigError(
                f"no owner for incident {incident.key}: the commander is not in [people], and neither the "
                f"service {service!r} nor default_owner names one"
            )
        reviewers = [r for r in dict.fromkeys([*(svc.reviewers if svc else []), *policy.reviewers]) if r != owner]
        attendees = list(
            dict.fromkeys([owner, *reviewers, *(p for p in [incident.commander, *incident.participants] if p in self.people)])
        )
        return Plan(
            postmortem_id=postmortem_id,
            incident=incident,
            policy=policy,
            owner=owner,
            reviewers=reviewers,
            attendees=attendees,
            people=sorted(self.people),
            tracker=policy.tracker,
            timeline_sources=policy.timeline_sources,
        )

    def chain_for(self, owner: str) -> dict[str, str | None]:
        """The escalation roles resolved for an owner: owner, manager, skip_level."""
        manager = self.people[owner].manager if owner in self.people else None
        skip = self.people[manager].manager if manager and manager in self.people else None
        return {"owner": owner, "manager": manager, "skip_level": skip}

    def resolve_target(self, target: str, owner: str) -> str | None:
        if target in ROLES:
            return self.chain_for(owner)[target]
        return target if target in self.people else None

    # ------------------------------------------------------------------ validation

    def check(self) -> None:
        """Cross-field checks that pydantic cannot do alone. Raises ConfigError with one line."""
        problems: list[str] = []
        for key, person in self.people.items():
            if person.manager and person.manager not in self.people:
                problems.append(f"people.{key}.manager: unknown person {person.manager!r}")
            try:
                from zoneinfo import ZoneInfo

                ZoneInfo(person.timezone)
            except Exception:
                problems.append(f"people.{key}.timezone: unknown time zone {person.timezone!r}")
        if self.default_owner and self.default_owner not in self.people:
            problems.append(f"default_owner: unknown person {self.default_owner!r}")
        for name, svc in self.services.items():
            if svc.owner and svc.owner not in self.people:
                problems.append(f"services.{name}.owner: unknown person {svc.owner!r}")
            for r in svc.reviewers:
                if r not in self.people:
                    problems.append(f"services.{name}.reviewers: unknown person {r!r}")
        severities = set(self.severity) | {s for svc in self.services.values() for s in svc.severity} | {"SEV3"}
        for sev in sorted(severities):
            for service in [None, *self.services]:
                where = f"policy for severity {sev}" + (f", service {service}" if service else "")
                try:
                    policy = self.policy_for(sev, service)
                except ValidationError as e:
                    problems.append(f"{where}: {_first_error(e)}")
                    continue
                for step in policy.escalation:
                    if step.notify not in ROLES and step.notify not in self.people:
                        problems.append(f"{where}: escalation target {step.notify!r} is neither a role nor a person")
                for r in policy.reviewers:
                    if r not in self.people:
                        problems.append(f"{where}: unknown reviewer {r!r}")
                if policy.tracker != "local" and getattr(self.trackers, policy.tracker, None) is None:
                    problems.append(f"{where}: tracker {policy.tracker!r} has no [trackers.{policy.tracker}] section")
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ConfigError(f"{self.source}: {problems[0]}{more}")


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
