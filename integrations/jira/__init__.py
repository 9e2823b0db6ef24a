"""The Jira Cloud plugin: action items as Jira issues (`[trackers.jira]`), the issues that mention an incident
as timeline events (`[timeline.jira]`), and the ticket status webhook (`POST /webhooks/jira`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.jira.settings import (
    ENV_API_TOKEN,
    ENV_EMAIL,
    ENV_WEBHOOK_SECRETS,
    JiraSettings,
    JiraTimelineSettings,
    template_problems,
)
from closeloop.integrations.plugin import Plugin, PluginContext, register

if TYPE_CHECKING:
    from closeloop.config import Config
    from closeloop.integrations.base import TicketWebhook, TimelineSource, Tracker


@register
class JiraPlugin(Plugin):
    name = "jira"
    settings = {"trackers": JiraSettings, "timeline": JiraTimelineSettings}
    secrets = (ENV_EMAIL, ENV_API_TOKEN, ENV_WEBHOOK_SECRETS)

    def trackers(self, ctx: PluginContext) -> list[Tracker]:
        settings: JiraSettings | None = ctx.settings("trackers", self.name)
        if settings is None:
            return []
        from closeloop.integrations.jira.tracker import JiraConfig, JiraTracker

        return [JiraTracker(JiraConfig(**settings.model_dump(), email=ctx.secrets.value(ENV_EMAIL),
                                       api_token=ctx.secrets.value(ENV_API_TOKEN)), people=dict(ctx.directory))]

    def timeline_sources(self, ctx: PluginContext) -> list[TimelineSource]:
        settings: JiraTimelineSettings | None = ctx.settings("timeline", self.name)
        tracker: JiraSettings | None = ctx.settings("trackers", self.name)
        url = settings.url or (tracker.url if tracker else None) if settings else None
        if settings is None or not url:
            return []
        from closeloop.integrations.jira.timeline import JiraTimelineConfig, JiraTimelineSource

        return [JiraTimelineSource(JiraTimelineConfig(**{**settings.model_dump(), "url": url},
                                                      email=ctx.secrets.value(ENV_EMAIL),
                                                      api_token=ctx.secrets.value(ENV_API_TOKEN)))]

    def ticket_webhooks(self, ctx: PluginContext) -> list[TicketWebhook]:
        from closeloop.integrations.jira.webhook import JiraTicketWebhook

        settings: JiraSettings | None = ctx.settings("trackers", self.name)
        wont_do = settings.wont_do_resolutions if settings else JiraSettings.default_wont_do_resolutions()
        return [JiraTicketWebhook(wont_do)]

    def problems(self, config: Config) -> list[str]:
        settings = config.plugin_settings.get(("trackers", self.name))
        problems = template_problems(settings) if isinstance(settings, JiraSettings) else []
        timeline = config.plugin_settings.get(("timeline", self.name))
        if isinstance(timeline, JiraTimelineSettings) and not timeline.url and settings is None:
            problems.append("timeline.jira: needs [timeline.jira] url or a [trackers.jira] section")
        return problems
