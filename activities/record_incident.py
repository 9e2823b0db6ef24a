"""Record the incident (every incident, for later recurrence checks) and resolve its plan."""

from __future__ import annotations

from temporalio import activity

from closeloop.config import Config, ConfigError
from closeloop.models import Incident, Model, Plan
from closeloop.store.store import Store

from closeloop.activities.support import log


class RecordIncidentInput(Model):
    postmortem_id: str
    incident: Incident


class IncidentActivities:
    """Recording incidents and resolving their plan; holds the config (policies, people) and the store."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store

    @activity.defn(name="record_incident")
    def record_incident(self, inp: RecordIncidentInput) -> Plan:
        try:
            plan = self.config.plan_for(inp.incident, inp.postmortem_id)
        except ConfigError as e:
            # Retried with backoff until someone fixes the config: the incident is not dropped.
            self.store.records.record_incident(inp.incident, postmortem_required=True)
            log().error("incident has no owner; fix the config, the lifecycle is waiting", error=str(e))
            raise
        self.store.records.record_incident(inp.incident, postmortem_required=plan.policy.postmortem_required)
        log().info("incident recorded", incident=inp.incident.key, required=plan.policy.postmortem_required,
                   owner=plan.owner)
        return plan
