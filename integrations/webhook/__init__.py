"""The generic webhook plugin: each notification as closeloop's own signed JSON document, POSTed to a receiver
of yours (`[notifiers.webhook]`), a channel people can be reached on; the URLs from CLOSELOOP_WEBHOOK_URLS, the
signing secret from CLOSELOOP_WEBHOOK_SECRET."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.chat_settings import handle_problems, webhooks_from
from closeloop.integrations.plugin import Plugin, PluginContext, register
from closeloop.integrations.webhook.settings import ENV_SECRET, ENV_WEBHOOKS, WebhookSettings

if TYPE_CHECKING:
    from closeloop.config import Config
    from closeloop.integrations.base import Channel


@register
class WebhookPlugin(Plugin):
    name = "webhook"
    settings = {"notifiers": WebhookSettings}
    secrets = (ENV_WEBHOOKS, ENV_SECRET)

    def channels(self, ctx: PluginContext) -> list[Channel]:
        settings: WebhookSettings | None = ctx.settings("notifiers", self.name)
        if settings is None:
            return []
        from closeloop.integrations.webhook.channel import WebhookChannel

        return [WebhookChannel(settings, webhooks_from(ctx.secrets, ENV_WEBHOOKS),
                               secrets=ctx.secrets.values(ENV_SECRET))]

    def problems(self, config: Config) -> list[str]:
        return handle_problems(config, self.name)
