"""The email plugin: notifications by SMTP (`[notifiers.email]`), a channel people can be reached on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.email.settings import ENV_PASSWORD, EmailSettings
from closeloop.integrations.plugin import Plugin, PluginContext, register

if TYPE_CHECKING:
    from closeloop.integrations.base import Channel


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
