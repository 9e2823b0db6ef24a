"""Builds the integrations a worker uses from the config: the built-in local tracker, notifier, calendar,
publisher and timeline sources always, and Jira, GitHub and the external timeline sources (PagerDuty,
GitHub, Slack, Jira) where the config has their section. The embedded default needs none of them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from closeloop.config import Config
from closeloop.directory import Directory
from closeloop.models import Person
from closeloop.store.store import Store
from closeloop.integrations.base import Calendar, Notifier, Publisher, TimelineSource, Tracker


@dataclass
class Integrations:
    config: Config
    directory: Directory
    store: Store
    notifiers: list[Notifier]
    calendar: Calendar
    publisher: Publisher
    trackers: dict[str, Tracker] = field(default_factory=dict)
    timeline_sources: dict[str, TimelineSource] = field(default_factory=dict)
    template_dir: Path | None = None

    def tracker(self, name: str) -> Tracker:
        try:
            return self.trackers[name]
        except KeyError:
            raise LookupError(f"no tracker named {name!r} is configured (have: {sorted(self.trackers)})") from None


def build(config: Config, store: Store | None = None) -> Integrations:
    from closeloop.integrations.local.calendar import LocalCalendar
    from closeloop.integrations.local.notifier import LogNotifier
    from closeloop.integrations.local.publisher import LocalPublisher
    from closeloop.integrations.local.timeline import AlertmanagerSource, IncidentFactsSource, NotesSource
    from closeloop.integrations.local.tracker import LocalTracker

    store = store or Store(config.db_url)
    template_dir = config.data_dir / "templates"
    trackers: dict[str, Tracker] = {"local": LocalTracker(store)}
    if config.trackers.jira is not None:
        from closeloop.integrations.jira_tracker import JiraConfig, JiraTracker

        settings = config.trackers.jira.model_dump()
        trackers["jira"] = JiraTracker(JiraConfig(**settings, email=os.environ.get("CLOSELOOP_JIRA_EMAIL", ""),
                                                  api_token=os.environ.get("CLOSELOOP_JIRA_API_TOKEN", "")),
                                       people=_people(config))
    if config.trackers.github is not None:
        from closeloop.integrations.github_tracker import GitHubConfig, GitHubTracker

        trackers["github"] = GitHubTracker(
            GitHubConfig(**config.trackers.github.model_dump(), token=os.environ.get("CLOSELOOP_GITHUB_TOKEN", "")),
            people=_people(config), store=store,  # the store paces issue and comment creation for all workers
        )
    timeline_sources: dict[str, TimelineSource] = {
        "incident": IncidentFactsSource(), "notes": NotesSource(store),
        "alertmanager": AlertmanagerSource(store, key_moments=config.timeline.alertmanager.key_moments
                                           if config.timeline.alertmanager else True),
        **_external_timeline_sources(config),
    }
    return Integrations(
        config=config,
        directory=config.people_directory(),
        store=store,
        notifiers=[LogNotifier(store)],
        calendar=LocalCalendar(store),
        publisher=LocalPublisher(store, config.data_dir / "documents"),
        trackers=trackers,
        timeline_sources=timeline_sources,
        template_dir=template_dir if template_dir.is_dir() else None,
    )


def _external_timeline_sources(config: Config) -> dict[str, TimelineSource]:
    """The timeline sources with a `[timeline.<name>]` section; tokens only from the environment."""
    sources: dict[str, TimelineSource] = {}
    settings = config.timeline
    people = _people(config)
    if settings.pagerduty is not None:
        from closeloop.integrations.pagerduty_timeline import PagerDutyTimelineConfig, PagerDutyTimelineSource

        pd = settings.pagerduty
        sources["pagerduty"] = PagerDutyTimelineSource(PagerDutyTimelineConfig(
            url=pd.url, token=os.environ.get("CLOSELOOP_PAGERDUTY_TOKEN", ""), page_size=pd.page_size,
            max_pages=pd.max_pages, timeout=pd.timeout))
    if settings.github is not None:
        from closeloop.integrations.github_timeline import GitHubTimelineConfig, GitHubTimelineSource

        gh = settings.github
        sources["github"] = GitHubTimelineSource(GitHubTimelineConfig(
            token=os.environ.get("CLOSELOOP_GITHUB_TOKEN", ""), base_url=gh.base_url, repositories=gh.repositories,
            service_repositories=gh.service_repositories, before=gh.slack_before, include=list(gh.include),
            page_size=gh.page_size, max_pages=gh.max_pages, timeout=gh.timeout), people=people)
    if settings.slack is not None:
        from closeloop.integrations.slack_timeline import SlackTimelineConfig, SlackTimelineSource

        sl = settings.slack
        sources["slack"] = SlackTimelineSource(SlackTimelineConfig(
            token=os.environ.get("CLOSELOOP_SLACK_TOKEN", ""), base_url=sl.base_url, channel=sl.channel,
            service_channels=sl.service_channels, reactions=sl.reactions, before=sl.slack_before,
            page_size=sl.page_size, max_pages=sl.max_pages, timeout=sl.timeout), people=people)
    if settings.jira is not None:
        from closeloop.integrations.jira_timeline import JiraTimelineConfig, JiraTimelineSource

        jt = settings.jira
        url = jt.url or (config.trackers.jira.url if config.trackers.jira else None)
        if url:
            sources["jira"] = JiraTimelineSource(JiraTimelineConfig(
                url=url, email=os.environ.get("CLOSELOOP_JIRA_EMAIL", ""),
                api_token=os.environ.get("CLOSELOOP_JIRA_API_TOKEN", ""), project=jt.project, label=jt.label,
                mention=jt.mention, page_size=jt.page_size, timeout=jt.timeout))
    return sources


def _people(config: Config) -> dict[str, Person]:
    return dict(config.people_directory())
