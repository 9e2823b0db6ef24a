"""Record the incident (every incident, for later recurrence checks) and resolve its plan."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity

from closeloop.activities.support import log
from closeloop.config import Config
from closeloop.directory import Directory
from closeloop.models import Incident, Model, Plan, TimelineEvent
from closeloop.planning import PlanError, plan_for
from closeloop.store.store import Store


class RecordIncidentInput(Model):
    postmortem_id: str
    incident: Incident


class IncidentActivities:
    """Recording incidents and resolving their plan; holds the config (policies), the directory and the store."""

    def __init__(self, config: Config, directory: Directory, store: Store) -> None:
        self.config = config
        self.directory = directory
        self.store = store

    @activity.defn(name="record_incident")
    def record_incident(self, inp: RecordIncidentInput) -> Plan:
        if inp.incident.unmapped_severity is not None:
            self.flag_unmapped_severity(inp.incident)
        try:
            plan = plan_for(self.config, self.directory, inp.incident, inp.postmortem_id)
        except PlanError as e:
            # Retried with backoff until someone fixes the config: the incident is not dropped.
            self.store.records.record_incident(inp.incident, postmortem_required=True)
            log().error("incident has no owner; fix the config, the lifecycle is waiting", error=str(e))
            raise
        self.store.records.record_incident(inp.incident, postmortem_required=plan.policy.postmortem_required)
        log().info("incident recorded", incident=inp.incident.key, required=plan.policy.postmortem_required,
                   owner=plan.owner)
        return plan

    def flag_unmapped_severity(self, incident: Incident) -> None:
        """A timeline note (and a warning) saying the source's severity name is not mapped, so that nobody takes
        the default policy the incident got for a choice. Stored once: a retry adds nothing."""
        text = (f"severity {incident.unmapped_severity!r} from {incident.source} is not mapped "
                f"([webhooks.{incident.source}] severities): the incident was given {incident.severity} and its policy")
        at = incident.resolved_at or incident.started_at or incident.detected_at or datetime.now(UTC)
        self.store.records.add_timeline_events(
            incident, [TimelineEvent(at=at, source="closeloop", kind="note", text=text)], notes=True)
        log().warning("incident severity not mapped", incident=incident.key, severity=incident.unmapped_severity,
                      given=incident.severity)


class DirectoryActivities:
    """Looking people up in the directory, for workflows that carry only the people they involve."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    @activity.defn(name="lookup_people")
    def lookup_people(self, keys: list[str]) -> list[str]:
        """The keys among `keys` that name a person in the directory."""
        return [key for key in keys if key in self.directory]
