"""Integration plugins: one folder per outside system under integrations/, registered by name.

A plugin is a class decorated with `@register` in its folder's `__init__.py`. It declares
- `name`, unique;
- `settings`: its config sections and their models, e.g. `{"trackers": JiraSettings, "timeline":
  JiraTimelineSettings}` for `[trackers.jira]` and `[timeline.jira]` (the section key is the plugin's name;
  a section kind is one of SECTION_KINDS). Defaults are written there, once;
- `secrets`: the environment variables it reads (through closeloop.secrets.Secrets, never os.environ);
and builds its implementations of the interfaces of closeloop.integrations.base from a PluginContext:
trackers, notifiers, channels, calendars, publishers, timeline sources (in the worker), incident, ticket and
interaction webhooks (in the web app; an incident webhook's `[webhooks.<name>]` section, e.g. its severity map,
is optional). Anything it leaves out it does not provide. Implementation modules are imported inside
those methods, so loading a plugin costs only its settings.

Adding a vendor is one folder with an `@register`ed plugin: closeloop finds every folder of this package
(`discover`), and third-party packages through the `closeloop.integrations` entry point group."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel

from closeloop.directory import Directory
from closeloop.secrets import Secrets

if TYPE_CHECKING:
    from closeloop.config import Config
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
    )
    from closeloop.store.store import Store

SECTION_KINDS = ("trackers", "timeline", "notifiers", "calendars", "publishers", "webhooks")
ENTRY_POINT_GROUP = "closeloop.integrations"


@dataclass
class PluginContext:
    """What a plugin builds its implementations from. `store` is the worker's store (the local adapters keep
    their data there, the GitHub tracker its shared rate limit); the web app builds webhooks only."""

    config: Config
    directory: Directory
    secrets: Secrets
    store: Store | None = None

    def settings(self, kind: str, name: str) -> Any:
        """The validated settings of `[<kind>.<name>]`, or None when the config has no such section."""
        return self.config.plugin_settings.get((kind, name))

    def require_store(self) -> Store:
        if self.store is None:
            raise RuntimeError("this integration keeps data in closeloop's store, and none was given")
        return self.store

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir


class Plugin:
    """One outside system. Subclasses override what they provide; each method returns a new list."""

    name: ClassVar[str]
    settings: ClassVar[dict[str, type[BaseModel]]] = {}
    secrets: ClassVar[tuple[str, ...]] = ()
    # Section names, in `[timeline.<name>]` etc., that this plugin's timeline sources answer to without a
    # section of their own (e.g. "alertmanager": its alerts arrive by webhook).
    builtin_timeline_sources: ClassVar[tuple[str, ...]] = ()

    def trackers(self, ctx: PluginContext) -> list[Tracker]:
        return []

    def notifiers(self, ctx: PluginContext) -> list[Notifier]:
        return []

    def channels(self, ctx: PluginContext) -> list[Channel]:
        """Ways to reach a person (email, Slack, chat), usually configured under `[notifiers.<name>]`."""
        return []

    def calendars(self, ctx: PluginContext) -> list[Calendar]:
        return []

    def booking_calendar(self, calendar: Calendar, ctx: PluginContext) -> Calendar:
        """The calendar that books meetings, as this plugin wants it: `calendar` itself, or a wrapper that adds
        to what it does (the email plugin's e-mailed invitations)."""
        return calendar

    def publishers(self, ctx: PluginContext) -> list[Publisher]:
        return []

    def timeline_sources(self, ctx: PluginContext) -> list[TimelineSource]:
        return []

    def incident_webhooks(self, ctx: PluginContext) -> list[IncidentWebhook]:
        return []

    def ticket_webhooks(self, ctx: PluginContext) -> list[TicketWebhook]:
        return []

    def interaction_webhooks(self, ctx: PluginContext) -> list[InteractionWebhook]:
        """A chat tool's interactivity endpoint: the buttons of closeloop's messages, pressed."""
        return []

    def problems(self, config: Config) -> list[str]:
        """Checks of its settings that need more than one field (or the rest of the config), one line each,
        naming the key. Field-level checks are its settings models' own."""
        return []


PLUGINS: dict[str, type[Plugin]] = {}
P = TypeVar("P", bound=type[Plugin])


def register(cls: P) -> P:
    """Class decorator: make the plugin known by its `name`."""
    existing = PLUGINS.get(cls.name)
    if existing is not None and existing is not cls:
        raise RuntimeError(f"two integration plugins are named {cls.name!r}: {existing.__module__} and "
                           f"{cls.__module__}")
    PLUGINS[cls.name] = cls
    return cls


_discovered = False


def discover() -> dict[str, type[Plugin]]:
    """Every plugin: the folders of this package, then the entry points of installed packages. Imported once."""
    global _discovered
    if not _discovered:
        package = importlib.import_module("closeloop.integrations")
        for info in pkgutil.iter_modules(package.__path__):
            if info.ispkg:
                importlib.import_module(f"closeloop.integrations.{info.name}")
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            loaded: Callable[..., Any] = ep.load()
            if isinstance(loaded, type) and issubclass(loaded, Plugin):
                register(loaded)
        _discovered = True
    return dict(PLUGINS)
