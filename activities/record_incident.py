"""Record the incident (every incident, for later recurrence checks) and resolve its plan."""

from __future__ import annotations

from temporalio import activity

from closeloop.activities._shared import deps, log
from closeloop.config import ConfigError
from closeloop.models import Incident, Model, Plan


class RecordIncidentInput(Model):
    postmortem_id: str
    incident: Incident


@activity.defn
def record_incident(inp: RecordIncidentInput) -> Plan:
    d = deps()
    try:
        plan = d.config.plan_for(inp.incident, inp.postmortem_id)
    except ConfigError as e:
        # Retried with backoff until someone fixes the config: the incident is not dropped.
        d.store.records.record_incident(inp.incident, postmortem_required=True)
        log().error("incident has no owner; fix the config, the lifecycle is waiting", error=str(e))
        raise
    d.store.records.record_incident(inp.incident, postmortem_required=plan.policy.postmortem_required)
    log().info("incident recorded", incident=inp.incident.key, required=plan.policy.postmortem_required,
               owner=plan.owner)
    return plan
