"""Builds what the worker and the web app use from the config and the registered plugins
(closeloop.integrations.plugin): lists of trackers, notifiers, calendars, publishers and timeline sources for
the worker, incident, ticket and interaction webhooks for the web app. The `local` plugin always contributes; a vendor's
parts exist where the config has its sections. The embedded default needs no account anywhere.

`check(config)` validates every plugin section with its plugin's settings model and adds the checks that
need the plugins (a policy naming a tracker or timeline source that nothing provides), then runs the
config's own checks: one ConfigError line naming the key, as `closeloop config check` prints it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from closeloop.config import Config, first_error, load_config
from closeloop.directory import Directory
from closeloop.integrations.base import (
    Calendar,
    Channel,
    IncidentWebhook,
    InteractionWebhook,
    Notifier,
    Publisher,
    TicketWebhook,
    TimelineSource,
    Tracker,
    Webhook,
)
from closeloop.integrations.plugin import SECTION_KINDS, Plugin, PluginContext, discover
from closeloop.policy import Policy
from closeloop.secrets import Secrets
from closeloop.store.store import Store


@dataclass
class Integrations:
    """The worker's integrations. `calendar` books meetings: the first calendar other than `local`, else
    `local`. Every notifier gets every notification; `channels` reach people by name (`[notify] channels`).
    Every publisher publishes; the first one's reference other than `local`'s is the document's (local's when it
    is the only one)."""

    config: Config
    directory: Directory
    store: Store
    notifiers: list[Notifier]
    calendars: list[Calendar]
    publishers: list[Publisher]
    channels: dict[str, Channel] = field(default_factory=dict)
    trackers: dict[str, Tracker] = field(default_factory=dict)
    timeline_sources: dict[str, TimelineSource] = field(default_factory=dict)
    template_dir: Path | None = None
    booking: Calendar | None = None  # `calendar` as the plugins wrap it (Plugin.booking_calendar)

    @property
    def calendar(self) -> Calendar:
        """The calendar that books meetings: the first configured one other than `local`; `local` (always
        there, first) only when no other calendar is configured; as the plugins wrap it (e-mailed invitations)."""
        if self.booking is not None:
            return self.booking
        return next((c for c in self.calendars if c.name != "local"), self.calendars[0])

    @property
    def publisher(self) -> Publisher:
        """The publisher whose reference is the document's: the first other than `local`, else `local`."""
        return next((p for p in self.publishers if p.name != "local"), self.publishers[0])

    def tracker(self, name: str) -> Tracker:
        try:
            return self.trackers[name]
        except KeyError:
            raise LookupError(f"no tracker named {name!r} is configured (have: {sorted(self.trackers)})") from None


@dataclass
class Webhooks:
    """The web app's webhooks, mounted at `POST /webhooks/<path>`."""

    incident: list[IncidentWebhook]
    ticket: list[TicketWebhook]
    interaction: list[InteractionWebhook] = field(default_factory=list)

    def all(self) -> list[Webhook]:
        return [*self.incident, *self.ticket, *self.interaction]


def plugins() -> list[Plugin]:
    """One instance of every registered plugin, `local` first, then by name."""
    found = discover()
    return [found[name]() for name in sorted(found, key=lambda n: (n != "local", n))]


def _provides_trackers(plugin: Plugin) -> bool:
    return type(plugin).trackers is not Plugin.trackers


def check(config: Config) -> None:
    """Validate the plugins' sections (kept in `config.plugin_settings`) and the whole config. ConfigError with one
    line (the first problem, and how many more)."""
    every = plugins()
    by_name = {p.name: p for p in every}
    problems: list[str] = []
    validated = config.plugin_settings
    validated.clear()
    for kind in SECTION_KINDS:
        sections: dict[str, dict[str, object]] = getattr(config, kind)
        for name, raw in sections.items():
            plugin = by_name.get(name)
            model = plugin.settings.get(kind) if plugin else None
            if model is None:
                known = sorted(p.name for p in every if kind in p.settings)
                problems.append(f"{kind}.{name}: no integration has [{kind}.{name}] settings (known: "
                                f"{', '.join(known) or 'none'})")
                continue
            try:
                validated[(kind, name)] = model.model_validate(raw)
            except ValidationError as e:
                problems.append(f"{kind}.{name}.{first_error(e)}")
    for plugin in every:
        problems += plugin.problems(config)

    # a section that is present counts (its own problems are reported above, once)
    trackers = {"local"} | {name for name in config.trackers if name in by_name and _provides_trackers(by_name[name])}
    builtin = [s for p in every for s in p.builtin_timeline_sources]
    configurable = sorted(p.name for p in every if "timeline" in p.settings and p.name not in builtin)

    def policy_problems(policy: Policy) -> list[str]:
        found: list[str] = []
        if policy.tracker not in trackers:
            found.append(f"tracker {policy.tracker!r} has no [trackers.{policy.tracker}] section")
        for name in policy.publishers or []:
            if name != "local" and name not in config.publishers:
                found.append(f"publisher {name!r} has no [publishers.{name}] section")
        for name in policy.timeline_sources:
            if name in builtin:
                continue
            if name not in configurable:
                found.append(f"unknown timeline source {name!r} (known: {', '.join([*builtin, *configurable])})")
            elif name not in config.timeline:
                found.append(f"timeline source {name!r} has no [timeline.{name}] section")
        return found

    channels = sorted(name for name in config.notifiers
                      if name in by_name and type(by_name[name]).channels is not Plugin.channels)
    problems += _channel_problems(config, channels)
    config.check(policy_problems=policy_problems, more=problems)
    config.mark_plugins_checked()


def _channel_problems(config: Config, channels: list[str]) -> list[str]:
    """`[notify] channels` and each person's `channels` name configured channels; `[notify] operator` is a
    person."""
    known = ", ".join(channels) or "none: add a [notifiers.<name>] section, e.g. [notifiers.email]"
    found = [f"notify.channels: unknown channel {name!r} (configured: {known})"
             for name in config.notify.channels if name not in channels]
    try:
        people = config.people_directory()
    except Exception:  # noqa: BLE001 - the directory's own problem is reported by config.check
        return found
    for person in people.values():
        found += [f"people.{person.key}.channels: unknown channel {name!r} (configured: {known})"
                  for name in person.channels or [] if name not in channels]
    for kind, names in config.notify.kinds.items():
        found += [f"notify.kinds.{kind}: unknown channel {name!r} (configured: {known})"
                  for name in names if name not in channels]
    for kind, rooms in config.notify.announce.items():
        found += [f"notify.announce.{kind}: unknown channel {room.split(':', 1)[0]!r} (configured: {known})"
                  for room in rooms if room.split(":", 1)[0] not in channels]
        publisher = kind.removeprefix("published.") if kind.startswith("published.") else None
        if publisher is not None and publisher != "local" and publisher not in config.publishers:
            found.append(f"notify.announce.{kind}: publisher {publisher!r} has no [publishers.{publisher}] section")
    if config.notify.operator and config.notify.operator not in people:
        found.append(f"notify.operator: unknown person {config.notify.operator!r}")
    return found


def context(config: Config, store: Store | None = None, secrets: Secrets | None = None) -> PluginContext:
    return PluginContext(config=config, directory=config.people_directory(), secrets=secrets or Secrets(),
                         store=store)


def build(config: Config, store: Store | None = None, *, secrets: Secrets | None = None) -> Integrations:
    """The worker's integrations (the config is checked first: ConfigError)."""
    check(config)
    store = store or Store(config.db_url, **config.store.pool)
    ctx = context(config, store, secrets)
    every = plugins()
    template_dir = config.data_dir / "templates"
    calendars = [c for p in every for c in p.calendars(ctx)]
    booking = next((c for c in calendars if c.name != "local"), calendars[0]) if calendars else None
    for plugin in every:
        if booking is not None:
            booking = plugin.booking_calendar(booking, ctx)
    return Integrations(
        config=config,
        directory=ctx.directory,
        store=store,
        notifiers=[n for p in every for n in p.notifiers(ctx)],
        calendars=calendars,
        booking=booking,
        channels={c.name: c for p in every for c in p.channels(ctx)},
        publishers=[x for p in every for x in p.publishers(ctx)],
        trackers={t.name: t for p in every for t in p.trackers(ctx)},
        timeline_sources={s.name: s for p in every for s in p.timeline_sources(ctx)},
        template_dir=template_dir if template_dir.is_dir() else None,
    )


def channels(config: Config, secrets: Secrets | None = None) -> dict[str, Channel]:
    """The configured delivery channels alone, built without a store (`closeloop notify test`)."""
    check(config)
    ctx = context(config, None, secrets)
    return {c.name: c for p in plugins() for c in p.channels(ctx)}


def webhooks(config: Config, secrets: Secrets | None = None) -> Webhooks:
    """The web app's webhooks (the config's plugin sections are validated first, if they were not)."""
    if not config.plugins_checked:
        check(config)
    ctx = context(config, None, secrets)
    every = plugins()
    return Webhooks(incident=[w for p in every for w in p.incident_webhooks(ctx)],
                    ticket=[w for p in every for w in p.ticket_webhooks(ctx)],
                    interaction=[w for p in every for w in p.interaction_webhooks(ctx)])


def load(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """closeloop.config.load_config, then `check`: the whole config, plugin sections included, or ConfigError."""
    config = load_config(path, env=None if env is None else dict(env))
    check(config)
    return config
