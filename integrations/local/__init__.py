"""The built-in `local` plugin: everything the embedded default needs, with no account anywhere. Tickets,
the notification outbox, busy times and meetings live in closeloop's own store (closeloop.store.local);
published documents are Markdown and HTML files in `<data_dir>/documents/`; the timeline sources `incident`
(the incident's own timestamps) and `notes` (notes people add) need no section."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.plugin import Plugin, PluginContext, register

if TYPE_CHECKING:
    from closeloop.integrations.base import Calendar, Notifier, Publisher, TimelineSource, Tracker


@register
class LocalPlugin(Plugin):
    name = "local"
    builtin_timeline_sources = ("incident", "notes")

    def trackers(self, ctx: PluginContext) -> list[Tracker]:
        from closeloop.integrations.local.tracker import LocalTracker

        return [LocalTracker(ctx.require_store())]

    def notifiers(self, ctx: PluginContext) -> list[Notifier]:
        from closeloop.integrations.local.notifier import LogNotifier

        return [LogNotifier(ctx.require_store())]

    def calendars(self, ctx: PluginContext) -> list[Calendar]:
        from closeloop.integrations.local.calendar import LocalCalendar

        return [LocalCalendar(ctx.require_store())]

    def publishers(self, ctx: PluginContext) -> list[Publisher]:
        from closeloop.integrations.local.publisher import LocalPublisher

        return [LocalPublisher(ctx.require_store(), ctx.data_dir / "documents")]

    def timeline_sources(self, ctx: PluginContext) -> list[TimelineSource]:
        from closeloop.integrations.local.timeline import IncidentFactsSource, NotesSource

        return [IncidentFactsSource(), NotesSource(ctx.require_store())]
