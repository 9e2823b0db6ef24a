"""The CalDAV plugin: the review meeting booked in people's own calendars on a CalDAV server (`[calendars.caldav]`).
Busy times come from each attendee's calendar (recurring events expanded); the event is created in the
organiser's calendar with a UID derived from the idempotency key, moved (SEQUENCE + 1) and cancelled
(STATUS:CANCELLED) in place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.directory import DirectoryError
from closeloop.integrations.caldav.settings import ENV_PASSWORD, CalDAVSettings
from closeloop.integrations.plugin import Plugin, PluginContext, register

if TYPE_CHECKING:
    from closeloop.config import Config
    from closeloop.integrations.base import Calendar


@register
class CalDAVPlugin(Plugin):
    name = "caldav"
    settings = {"calendars": CalDAVSettings}
    secrets = (ENV_PASSWORD,)

    def calendars(self, ctx: PluginContext) -> list[Calendar]:
        settings: CalDAVSettings | None = ctx.settings("calendars", self.name)
        if settings is None:
            return []
        from closeloop.integrations.caldav.calendar import CalDAVCalendar

        return [CalDAVCalendar(settings, password=ctx.secrets.value(ENV_PASSWORD), people=dict(ctx.directory))]

    def problems(self, config: Config) -> list[str]:
        settings = config.plugin_settings.get(("calendars", self.name))
        if not isinstance(settings, CalDAVSettings):
            return []
        try:
            organizer = config.people_directory().person(settings.organizer)
        except DirectoryError:
            return []  # the directory's own check reports it
        if organizer is None:
            return [f"calendars.caldav.organizer: {settings.organizer!r} is not a person of the directory"]
        if settings.organizer_calendar is None and settings.calendar_for(organizer.key, organizer.email) is None:
            return ["calendars.caldav.organizer_calendar: needed, as the organizer has no calendar in "
                    "`calendars` and there is no `calendar_url`"]
        return []
