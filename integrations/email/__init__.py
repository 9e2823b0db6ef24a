"""The email plugin: notifications by SMTP (`[notifiers.email]`), a channel people can be reached on; with
`calendar_invites`, the review meeting's iCalendar invitations for the people the booking calendar cannot reach
(closeloop.integrations.email.invites)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.email.settings import ENV_PASSWORD, EmailSettings
from closeloop.integrations.plugin import Plugin, PluginContext, register

if TYPE_CHECKING:
    from closeloop.integrations.base import Calendar, Channel


@register
class EmailPlugin(Plugin):
    name = "email"
    settings = {"notifiers": EmailSettings}
    secrets = (ENV_PASSWORD,)

    def channels(self, ctx: PluginContext) -> list[Channel]:
        settings: EmailSettings | None = ctx.settings("notifiers", self.name)
        if settings is None:
            return []
        from closeloop.integrations.email.channel import EmailChannel

        template_dir = ctx.data_dir / "templates"
        return [EmailChannel(settings, ctx.secrets.value(ENV_PASSWORD),
                             template_dir=template_dir if template_dir.is_dir() else None)]

    def booking_calendar(self, calendar: Calendar, ctx: PluginContext) -> Calendar:
        settings: EmailSettings | None = ctx.settings("notifiers", self.name)
        if settings is None or not settings.calendar_invites:
            return calendar
        from closeloop.integrations.email.channel import EmailChannel
        from closeloop.integrations.email.invites import EmailInvites

        channel = EmailChannel(settings, ctx.secrets.value(ENV_PASSWORD))
        return EmailInvites(calendar, channel, people=dict(ctx.directory), public_url=ctx.config.web.public_url)
