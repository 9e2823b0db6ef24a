"""Configuration: one TOML or YAML file (policies, services, people) plus environment variables for
where things run. Validated at start; every problem is reported as one clear line."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypedDict

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from closeloop import retention as keep
from closeloop.directory import Directory, DirectoryError, DirectorySettings, load_directory
from closeloop.durations import Duration
from closeloop.policy import ROLES, Policy, WorkingHours
from closeloop.validation import first_problem

ENV_CONFIG = "CLOSELOOP_CONFIG"


class ConfigError(Exception):
    """A configuration problem, worded for the person who wrote the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_address(address: str) -> str:
    """A Temporal frontend address, HOST:PORT (e.g. 127.0.0.1:7233, temporal.internal:7233, [::1]:7233), or
    ValueError saying what is wrong: the SDK's own error for a bad one is a bare ValueError deep in a connect."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or any(c.isspace() for c in address):
        raise ValueError(f"{address!r} is not HOST:PORT (e.g. 127.0.0.1:7233)")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{address!r}: the port must be a number from 1 to 65535")
    return address


class TemporalSettings(_Strict):
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "closeloop"
    ui_port: int = 8233
    max_cached_workflows: int = Field(default=250, ge=1, description=(
        "the worker's sticky cache: workflows kept in memory between their tasks, about 0.2 MiB each; an evicted "
        "one is replayed when it wakes (deploy/README.md: Capacity)"))

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        return check_address(v)


class PoolArgs(TypedDict):
    pool_size: int
    max_overflow: int


class StoreSettings(_Strict):
    """`[store]`: where the records are, and (PostgreSQL) each process's connection pool: up to `pool_size` +
    `max_overflow` connections per worker or web app process (deploy/README.md: Capacity)."""

    url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite in the data dir")
    pool_size: int = Field(default=10, ge=1, le=200, description="connections each process keeps open (PostgreSQL)")
    max_overflow: int = Field(default=20, ge=0, le=500,
                              description="connections a process may open beyond pool_size at a peak (PostgreSQL)")

    @property
    def pool(self) -> PoolArgs:
        """The pool's keyword arguments for Store."""
        return {"pool_size": self.pool_size, "max_overflow": self.max_overflow}


class WebAuthSettings(_Strict):
    """`[web.auth]`: who is who in the web app (closeloop/web/signin.py). `oidc`: people sign in at an OpenID
    Connect provider (Okta, Google, Entra ID, Keycloak...); its client secret is CLOSELOOP_OIDC_CLIENT_SECRET.
    `proxy`: an authenticating proxy in front (oauth2-proxy...) names the person in `proxy_header`, trusted only
    from `trusted_proxies`. Either way the email maps to a person of the directory, and the session is a signed
    cookie (key: CLOSELOOP_SESSION_SECRET)."""

    mode: Literal["oidc", "proxy"] = "oidc"
    issuer: str | None = Field(default=None, pattern=r"^https?://[^\s]+$",
                               description="the provider's issuer URL (its /.well-known/openid-configuration)")
    client_id: str | None = None
    scopes: str = "openid email profile"
    email_claim: str = "email"
    proxy_header: str = "X-Forwarded-Email"
    trusted_proxies: list[str] = Field(default_factory=list, description="addresses or networks (CIDR) of the "
                                                                         "proxies whose identity header is trusted")
    admins: list[str] = Field(default_factory=list, description="person keys who see and do everything")
    session_lifetime: Duration = Field(default=timedelta(hours=12))
    link_lifetime: Duration = Field(default=timedelta(days=7), description="how long a link in a message opens "
                                                                           "its page")
    secure_cookies: bool = Field(default=True, description="Secure cookies (HTTPS only; browsers treat "
                                                           "http://localhost as secure too)")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for entry in v:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
        return v


class WebSettings(_Strict):
    """`[web]`: the HTTP app (`closeloop serve`). Its secrets (API tokens, webhook secrets) come only from
    the environment (closeloop/secrets.py), never from this file."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$",
                                   description="the web app's address as people reach it, for the links in "
                                               "messages (e.g. https://closeloop.example.com)")
    max_body_bytes: int = Field(default=256 * 1024, ge=1, description="larger request bodies get 413")
    # Against slow and too many clients (closeloop/web/server.py): a client gets this long for its request line
    # and headers, then this long for the whole body (else 408), and an idle kept-alive connection is closed
    # after keep_alive_timeout. Connections beyond max_connections get 503 at once and are closed.
    header_timeout: Duration = Field(default=timedelta(seconds=10), description="request line and headers")
    body_timeout: Duration = Field(default=timedelta(seconds=30), description="the whole body, after the headers")
    keep_alive_timeout: Duration = Field(default=timedelta(seconds=5), description="an idle connection")
    max_connections: int = Field(default=2048, ge=1, le=65536, description="open connections at once")
    auth: WebAuthSettings = Field(default_factory=WebAuthSettings)

    @field_validator("header_timeout", "body_timeout", "keep_alive_timeout")
    @classmethod
    def _timeout(cls, v: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= v <= timedelta(minutes=10):
            raise ValueError("must be between 1s and 10m")
        return v


class PersonConfig(_Strict):
    name: str
    email: str
    timezone: str = "UTC"
    manager: str | None = None
    team: str | None = Field(default=None, description="the team the dashboard groups this person's work under "
                                                       "(default: their manager's team)")
    handles: dict[str, str] = Field(default_factory=dict)
    channels: list[str] | None = Field(default=None, description="this person's channels, in order: the first "
                                                                  "that reaches them; [notify] channels if unset")
    reminders: Literal["immediate", "digest"] = Field(
        default="immediate", description="immediate, or digest: reminders come in one message a day")


class ServiceConfig(_Strict):
    owner: str | None = None
    reviewers: list[str] = Field(default_factory=list)
    policy: dict[str, Any] = Field(default_factory=dict)
    severity: dict[str, dict[str, Any]] = Field(default_factory=dict)


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


ANY_HOUR_KINDS = ("invite", "published", "cancelled", "lifecycle_failed", "channel_failed")


class NotifySettings(_Strict):
    """`[notify]`: how people are reached. Every notification is recorded in the outbox (and the log); besides,
    it goes through the first of the person's `channels` that reaches them (a plugin's channel, configured
    under `[notifiers.<name>]`: email, slack, ...), falling back to the next when one fails for good. A person's
    own `channels` replace these. Empty (the default): the outbox only. A notification due outside
    `working_hours` in the recipient's time zone waits for them (a workflow timer), unless its kind is in
    `any_hour`."""

    channels: list[str] = Field(default_factory=list, description="channel names, in the order to try them")
    operator: str | None = Field(default=None, description="person key told (once per channel and person) "
                                                           "when a channel fails for good")
    kinds: dict[str, list[str]] = Field(default_factory=dict,
                                        description="notification kind -> its channels in order, for everyone "
                                                    "(e.g. { draft_requested = [\"email\"] })")
    announce: dict[str, list[str]] = Field(
        default_factory=dict, description="notification kind -> rooms it is also posted to, each '<channel>' (its "
                                          "default room) or '<channel>:<room>', e.g. { published = "
                                          "[\"slack:C0INCIDENTS\"] }; `published.<publisher>` (e.g. "
                                          "\"published.confluence\"): rooms told when that publisher published, "
                                          "with its link")
    defer_to_working_hours: bool = Field(default=True, description="false: every notification goes out when it "
                                                                  "is due, at any hour")
    working_hours: WorkingHours = Field(default_factory=WorkingHours,
                                        description="a notification waits for these hours in the recipient's own "
                                                    "time zone (deferred, never dropped)")
    any_hour: list[str] = Field(default_factory=lambda: list(ANY_HOUR_KINDS),
                                description="notification kinds that go out at once, at any hour")


class InboxSettings(_Strict):
    """`[inbox]`: where the inbox's forwarder runs (closeloop/forwarder.py): in the web app (`closeloop serve`,
    the default: a committed incident wakes it at once) or in the worker (`closeloop worker`: the web app then
    only commits and answers, which keeps its CPU for the requests; the worker looks every second). Exactly
    one of them forwards; `closeloop dev` runs both in one process either way."""

    forward_in: Literal["web", "worker"] = Field(default="web", description="web or worker")


class TelemetrySettings(_Strict):
    """`[telemetry]`: what the processes tell the platform's monitoring (closeloop/telemetry.py). The worker serves
    `/metrics` (closeloop's and the Temporal SDK's, Prometheus text), `/healthz` and `/readyz` on `worker_host`:
    `worker_port`; the web app serves the same paths on its own port. `/metrics` needs the bearer token of
    CLOSELOOP_METRICS_TOKEN, or, without one, comes from this machine (loopback) only. Tracing (OpenTelemetry,
    through temporalio.contrib.opentelemetry) is off unless `tracing = true`."""

    worker_host: str = Field(default="127.0.0.1", description="the worker's metrics and health address "
                             "(0.0.0.0 in a container)")
    worker_port: int = Field(default=9464, ge=0, le=65535, description="the worker's metrics and health port; "
                             "0: none")
    sdk_metrics: bool = Field(default=True, description="include the Temporal SDK's metrics (task slots, "
                              "schedule-to-start latency, sticky cache...) in the worker's /metrics")
    tracing: bool = Field(default=False, description="OpenTelemetry spans for workflows, activities, signals, "
                          "queries and updates")
    traces_exporter: Literal["otlp", "console"] = Field(default="otlp", description="otlp: OTLP over HTTP to "
                                                        "`otlp_endpoint` (pip install closeloop[tracing]); console: "
                                                        "printed (for a try)")
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s]+$", description="e.g. "
                                      "http://otel-collector:4318/v1/traces (default: OTEL_EXPORTER_OTLP_ENDPOINT, "
                                      "else the exporter's own default)")
    service_name: str = Field(default="closeloop", min_length=1, description="the spans' service.name")


class ReportSettings(_Strict):
    """`[reports]`: the effectiveness review for reliability leads (the `closeloop-effectiveness-review` Schedule,
    applied at worker start; `closeloop report effectiveness` makes the same report on demand). Each run covers
    the calendar month before it: the action items completed and their verdicts, the recurrences, the overdue
    items, and the services that keep failing. It is published through the publishers, like a postmortem, and
    sent to `effectiveness_to` through their channels."""

    effectiveness_to: list[str] = Field(default_factory=list, description="person keys of the reliability leads "
                                        "who get the review (empty: it is only published)")
    effectiveness_cron: str = Field(default="0 9 1 * *", description="when it runs: a five-field cron in UTC "
                                    "(default: 09:00 on the first of each month)")
    failing_after: int = Field(default=2, ge=2, le=1000, description="a service with at least this many incidents "
                               "in the period is listed as one that keeps failing")

    @field_validator("effectiveness_cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        fields = v.split()
        if len(fields) != 5 or not all(re.fullmatch(r"[0-9*,/-]+", f) for f in fields):
            raise ValueError("must be a five-field cron of numbers, *, -, / and , (e.g. \"0 9 1 * *\")")
        return " ".join(fields)


class RetentionSettings(_Strict):
    """`[retention]`: how long the store keeps what it no longer needs; the `closeloop-retention` Schedule (every
    `every`) and `closeloop db prune` delete older rows in batches of `batch_size` (closeloop/retention.py)."""

    deliveries: Duration = Field(default=keep.DEFAULT_DELIVERIES,
                                 description="webhook delivery log (at least the 7d replay window)")
    notifications: Duration = Field(default=keep.DEFAULT_NOTIFICATIONS, description="notification outbox")
    rate_events: Duration = Field(default=keep.DEFAULT_RATE_EVENTS, description="rate limit events (at least 1d)")
    closed_records: Duration | None = Field(
        default=None, description="closed lifecycles' records (at least 30d); unset: kept forever")
    every: Duration = Field(default=keep.DEFAULT_EVERY, description="the clean-up's interval (at least 1h)")
    batch_size: int = Field(default=keep.DEFAULT_BATCH, ge=1, le=100_000, description="rows per transaction")

    @field_validator("deliveries")
    @classmethod
    def _deliveries(cls, v: timedelta) -> timedelta:
        if v < keep.REPLAY_WINDOW:
            raise ValueError("must be at least 7d (senders may replay a delivery for that long: GitHub, Jira)")
        return v

    @field_validator("notifications")
    @classmethod
    def _notifications(cls, v: timedelta) -> timedelta:
        if v < timedelta(days=1):
            raise ValueError("must be at least 1d (a retried notification must still find its outbox row)")
        return v

    @field_validator("rate_events")
    @classmethod
    def _rate_events(cls, v: timedelta) -> timedelta:
        if v < keep.MAX_RATE_WINDOW:
            raise ValueError("must be at least 1d (the longest rate limit window)")
        return v

    @field_validator("closed_records")
    @classmethod
    def _closed(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v < keep.MIN_CLOSED_RECORDS:
            raise ValueError("must be at least 30d (or unset: closed lifecycles are kept forever)")
        return v

    @field_validator("every")
    @classmethod
    def _every(cls, v: timedelta) -> timedelta:
        if v < timedelta(hours=1):
            raise ValueError("must be at least 1h")
        return v
class TicketSettings(_Strict):
    """`[tickets]`: what happens to the tickets of action items that closeloop stops following."""

    close_on_cancel: bool = Field(default=True, description="close the tickets of a cancelled lifecycle's open "
                                  "items as won't do (they always get a comment saying why)")


class Config(_Strict):
    source: str = Field(default="<built-in>", exclude=True)
    data_dir: Path = Path(".closeloop")
    default_owner: str | None = None
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    # The integration plugins' sections, `[<kind>.<plugin>]`: each validated by its plugin's own settings model
    # (closeloop.integrations.registry.check), never here.
    trackers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    timeline: dict[str, dict[str, Any]] = Field(default_factory=dict)
    notifiers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    calendars: dict[str, dict[str, Any]] = Field(default_factory=dict)
    publishers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    webhooks: dict[str, dict[str, Any]] = Field(default_factory=dict)  # incident sources: severity maps...
    sync: SyncSettings = Field(default_factory=SyncSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    tickets: TicketSettings = Field(default_factory=TicketSettings)
    policy: dict[str, Any] = Field(default_factory=dict)
    severity: dict[str, dict[str, Any]] = Field(default_factory=dict)
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    people: dict[str, PersonConfig] = Field(default_factory=dict)
    directory: DirectorySettings = Field(default_factory=DirectorySettings)

    _directory: Directory | None = PrivateAttr(default=None)
    _plugin_settings: dict[tuple[str, str], BaseModel] = PrivateAttr(default_factory=dict)
    _plugins_checked: bool = PrivateAttr(default=False)

    # ------------------------------------------------------------------ derived

    @property
    def db_url(self) -> str:
        return self.store.url or f"sqlite:///{(self.data_dir / 'closeloop.db').resolve()}"

    def people_directory(self) -> Directory:
        """The people directory from its source (`[directory]`), loaded once; DirectoryError when unreadable."""
        if self._directory is None:
            self._directory = load_directory(self.directory, self.people)
        return self._directory

    @property
    def plugin_settings(self) -> dict[tuple[str, str], BaseModel]:
        """(kind, plugin) -> its validated settings; filled by closeloop.integrations.registry.check."""
        return self._plugin_settings

    @property
    def plugins_checked(self) -> bool:
        """Whether closeloop.integrations.registry.check has validated the plugin sections."""
        return self._plugins_checked

    def mark_plugins_checked(self) -> None:
        self._plugins_checked = True

    # ------------------------------------------------------------------ validation

    def check(self, *, policy_problems: Callable[[Policy], list[str]] | None = None,
              more: list[str] | None = None) -> None:
        """Cross-field checks that pydantic cannot do alone. Raises ConfigError with one line. The integration
        registry adds its own: `policy_problems` of each resolved policy (trackers and timeline sources it
        names), and `more` (its sections)."""
        from closeloop.planning import policy_for  # here: loading a config (the CLI) needs no planning
        problems: list[str] = list(more or [])
        try:
            people = self.people_directory()
        except DirectoryError as e:
            raise ConfigError(f"{self.source}: {e}") from None
        problems += people.problems()
        if self.default_owner and self.default_owner not in people:
            problems.append(f"default_owner: unknown person {self.default_owner!r}")
        for key in self.reports.effectiveness_to:
            if key not in people:
                problems.append(f"reports.effectiveness_to: unknown person {key!r}")
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
                    problems.append(f"{where}: {first_error(e)}")
                    continue
                for step in policy.escalation:
                    if step.notify not in ROLES and step.notify not in people:
                        problems.append(f"{where}: escalation target {step.notify!r} is neither a role nor a person")
                for r in policy.reviewers:
                    if r not in people:
                        problems.append(f"{where}: unknown reviewer {r!r}")
                if policy_problems is not None:
                    problems += [f"{where}: {p}" for p in policy_problems(policy)]
        if problems:
            others = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ConfigError(f"{self.source}: {problems[0]}{others}")


def first_error(e: ValidationError) -> str:
    """"<dotted path>: <what is wrong>" of the first error (closeloop.validation)."""
    return replace(first_problem(e), others=0).line()


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); save it "
                          "as UTF-8") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
    except tomllib.TOMLDecodeError as e:  # its message says "(at line N, column M)"
        raise ConfigError(f"{path}: not valid TOML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table/mapping")
    return data


def _yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's problem with the line and column it names (1-based), on one line."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or getattr(e, "context", None) or str(e).splitlines()[0]
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{problem}{where}"


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


def load_config(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate the config. Environment variables override where things run:
    CLOSELOOP_TEMPORAL_ADDRESS, CLOSELOOP_NAMESPACE, CLOSELOOP_TASK_QUEUE, CLOSELOOP_DB_URL, CLOSELOOP_DB_POOL_SIZE,
    CLOSELOOP_DB_MAX_OVERFLOW, CLOSELOOP_DATA_DIR,
    CLOSELOOP_UI_PORT, CLOSELOOP_WEB_HOST, CLOSELOOP_WEB_PORT, CLOSELOOP_MAX_CACHED_WORKFLOWS, CLOSELOOP_METRICS_HOST,
    CLOSELOOP_METRICS_PORT (the worker's /metrics and health checks; 0: none)."""
    environ: Mapping[str, str] = os.environ if env is None else env
    found = find_config_path(path)
    if found is None:
        data, source = tomllib.loads(builtin_config_text()), "<built-in example config>"
    else:
        data, source = _read(found), str(found)
    overrides = {
        ("temporal", "address"): environ.get("CLOSELOOP_TEMPORAL_ADDRESS"),
        ("temporal", "namespace"): environ.get("CLOSELOOP_NAMESPACE"),
        ("temporal", "task_queue"): environ.get("CLOSELOOP_TASK_QUEUE"),
        ("store", "url"): environ.get("CLOSELOOP_DB_URL"),
        ("store", "pool_size"): environ.get("CLOSELOOP_DB_POOL_SIZE"),
        ("store", "max_overflow"): environ.get("CLOSELOOP_DB_MAX_OVERFLOW"),
        ("web", "host"): environ.get("CLOSELOOP_WEB_HOST"),
        ("web", "port"): environ.get("CLOSELOOP_WEB_PORT"),
        ("temporal", "max_cached_workflows"): environ.get("CLOSELOOP_MAX_CACHED_WORKFLOWS"),
        ("telemetry", "worker_host"): environ.get("CLOSELOOP_METRICS_HOST"),
        ("telemetry", "worker_port"): environ.get("CLOSELOOP_METRICS_PORT"),
    }
    for (section, key), value in overrides.items():
        if value:
            data.setdefault(section, {})[key] = value
    if environ.get("CLOSELOOP_UI_PORT"):
        data.setdefault("temporal", {})["ui_port"] = environ["CLOSELOOP_UI_PORT"]
    if environ.get("CLOSELOOP_DATA_DIR"):
        data["data_dir"] = environ["CLOSELOOP_DATA_DIR"]
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {first_error(e)}") from None
    config.source = source
    config.check()
    return config
