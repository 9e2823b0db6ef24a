"""The Google Calendar plugin (`[calendars.google]`): attendees' free/busy and the postmortem review meeting,
booked in the organiser's calendar through the Calendar API v3 (google-api-python-client) as a service account.
The key comes from CLOSELOOP_GOOGLE_SERVICE_ACCOUNT_JSON or CLOSELOOP_GOOGLE_SERVICE_ACCOUNT_FILE."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.google.settings import (
    ENV_SERVICE_ACCOUNT_FILE,
    ENV_SERVICE_ACCOUNT_JSON,
    GoogleCalendarSettings,
)
from closeloop.integrations.plugin import Plugin, PluginContext, register

if TYPE_CHECKING:
    from closeloop.integrations.base import Calendar


@register
class GooglePlugin(Plugin):
    name = "google"
    settings = {"calendars": GoogleCalendarSettings}
    secrets = (ENV_SERVICE_ACCOUNT_JSON, ENV_SERVICE_ACCOUNT_FILE)

    def calendars(self, ctx: PluginContext) -> list[Calendar]:
        settings: GoogleCalendarSettings | None = ctx.settings("calendars", self.name)
        if settings is None:
            return []
        from closeloop.integrations.google.calendar import GoogleCalendar, GoogleCalendarConfig

        return [GoogleCalendar(GoogleCalendarConfig(**settings.model_dump(),
                                                    service_account_json=ctx.secrets.value(ENV_SERVICE_ACCOUNT_JSON),
                                                    service_account_file=ctx.secrets.value(ENV_SERVICE_ACCOUNT_FILE)),
                               people=dict(ctx.directory))]
