"""Record the incident (every incident, for later recurrence checks) and resolve its plan."""

from __future__ import annotations

from temporalio import activity

from closeloop.activities.support import log
from closeloop.config import Config
from closeloop.directory import Directory
from closeloop.models import Incident, Model, Plan
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


class DirectoryActivities:
    """Looking people up in the directory, for workflows that carry only the people they involve."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    @activity.defn(name="lookup_people")
    def lookup_people(self, keys: list[str]) -> list[str]:
        """The keys among `keys` that name a person in the directory."""
        return [key for key in keys if key in self.directory]
