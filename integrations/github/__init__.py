"""The GitHub plugin: action items as GitHub issues (`[trackers.github]`), deployments, merged pull requests
and commits as timeline events (`[timeline.github]`), the published postmortem as a Markdown file of a repository,
proposed in a pull request or committed directly (`[publishers.github]`), and the ticket status webhook
(`POST /webhooks/github`). One token for all: CLOSELOOP_GITHUB_TOKEN."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.integrations.github.settings import (
    ENV_TOKEN,
    ENV_WEBHOOK_SECRETS,
    GitHubPublisherSettings,
    GitHubSettings,
    GitHubTimelineSettings,
    repo_problems,
)
from closeloop.integrations.plugin import Plugin, PluginContext, register

if TYPE_CHECKING:
    from closeloop.config import Config
    from closeloop.integrations.base import Publisher, TicketWebhook, TimelineSource, Tracker


@register
class GitHubPlugin(Plugin):
    name = "github"
    settings = {"trackers": GitHubSettings, "timeline": GitHubTimelineSettings, "publishers": GitHubPublisherSettings}
    secrets = (ENV_TOKEN, ENV_WEBHOOK_SECRETS)

    def trackers(self, ctx: PluginContext) -> list[Tracker]:
        settings: GitHubSettings | None = ctx.settings("trackers", self.name)
        if settings is None:
            return []
        from closeloop.integrations.github.tracker import GitHubConfig, GitHubTracker

        # the store paces issue and comment creation for all workers
        return [GitHubTracker(GitHubConfig(**settings.model_dump(), token=ctx.secrets.value(ENV_TOKEN)),
                              people=dict(ctx.directory), store=ctx.require_store())]

    def timeline_sources(self, ctx: PluginContext) -> list[TimelineSource]:
        settings: GitHubTimelineSettings | None = ctx.settings("timeline", self.name)
        if settings is None:
            return []
        from closeloop.integrations.github.timeline import GitHubTimelineConfig, GitHubTimelineSource

        return [GitHubTimelineSource(GitHubTimelineConfig(**settings.model_dump(), token=ctx.secrets.value(ENV_TOKEN)),
                                     people=dict(ctx.directory))]

    def publishers(self, ctx: PluginContext) -> list[Publisher]:
        settings: GitHubPublisherSettings | None = ctx.settings("publishers", self.name)
        if settings is None:
            return []
        token = ctx.secrets.value(ENV_TOKEN)
        if not token:
            from closeloop.config import ConfigError

            raise ConfigError(f"publishers.github: {ENV_TOKEN} is not set: closeloop commits the postmortems to "
                              f"{settings.repo} with that token (it needs write access to the repository's contents "
                              "and pull requests)")
        from closeloop.integrations.github.publisher import GitHubPublisher

        return [GitHubPublisher(settings, token=token)]

    def ticket_webhooks(self, ctx: PluginContext) -> list[TicketWebhook]:
        from closeloop.integrations.github.webhook import GitHubTicketWebhook

        return [GitHubTicketWebhook()]

    def problems(self, config: Config) -> list[str]:
        settings = config.plugin_settings.get(("trackers", self.name))
        return repo_problems(settings) if isinstance(settings, GitHubSettings) else []
