"""Builds the integrations a worker uses from the config. Later issues add Jira, GitHub, SMTP, Slack,
CalDAV and PagerDuty here; the embedded default needs none of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from closeloop.config import Config
from closeloop.models import Person
from closeloop.store.store import Store
from integrations.base import Calendar, Notifier, Publisher, TimelineSource, Tracker


@dataclass
class Integrations:
    config: Config
    store: Store
    notifier: Notifier
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
    from integrations.local.calendar import LocalCalendar
    from integrations.local.notifier import LogNotifier
    from integrations.local.publisher import LocalPublisher
    from integrations.local.timeline import IncidentFactsSource, NotesSource
    from integrations.local.tracker import LocalTracker

    store = store or Store(config.db_url)
    template_dir = config.data_dir / "templates"
    trackers: dict[str, Tracker] = {"local": LocalTracker(store)}
    if config.trackers.jira is not None:
        import os

        from integrations.jira_tracker import JiraConfig, JiraTracker

        settings = config.trackers.jira.model_dump()
        trackers["jira"] = JiraTracker(JiraConfig(**settings, email=os.environ.get("CLOSELOOP_JIRA_EMAIL", ""),
                                                  api_token=os.environ.get("CLOSELOOP_JIRA_API_TOKEN", "")),
                                       people=_people(config))
    if config.trackers.github is not None:
        import os

        from integrations.github_tracker import GitHubConfig, GitHubTracker

        trackers["github"] = GitHubTracker(
            GitHubConfig(**config.trackers.github.model_dump(), token=os.environ.get("CLOSELOOP_GITHUB_TOKEN", "")),
            people=_people(config), store=store,  # the store paces issue and comment creation for all workers
        )
    return Integrations(
        config=config,
        store=store,
        notifier=LogNotifier(store),
        calendar=LocalCalendar(store),
        publisher=LocalPublisher(store, config.data_dir / "documents"),
        trackers=trackers,
        timeline_sources={"incident": IncidentFactsSource(), "notes": NotesSource(store)},
        template_dir=template_dir if template_dir.is_dir() else None,
    )


def _people(config: Config) -> dict[str, Person]:
    return {key: person for key in config.people if (person := config.person(key)) is not None}
