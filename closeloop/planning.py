"""Plan resolution: what an incident's policy and the people directory say, resolved once when its lifecycle
starts (closeloop.models.Plan), so that a config change never alters a running lifecycle halfway through.

The policy is `[policy]` <- `[severity.X]` <- `[services.S.policy]` <- `[services.S.severity.X]` for the
incident's severity and first service. The plan carries only the people the lifecycle involves (owner,
reviewers, attendees, escalation targets and their managers up two levels), never the whole directory:
its size in the workflow's history does not grow with the company."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closeloop.directory import Directory
from closeloop.models import Incident, Plan
from closeloop.policy import ROLES, Policy, deep_merge

if TYPE_CHECKING:
    from closeloop.config import Config


class PlanError(Exception):
    """The incident cannot be planned (nobody to own it); worded for the person who maintains the config."""


def policy_for(config: Config, severity: str, service: str | None) -> Policy:
    raw = deep_merge(config.policy, config.severity.get(severity, {}))
    svc = config.services.get(service) if service else None
    if svc:
        raw = deep_merge(raw, svc.policy)
        raw = deep_merge(raw, svc.severity.get(severity, {}))
    return Policy.model_validate(raw)


def plan_for(config: Config, directory: Directory, incident: Incident, postmortem_id: str) -> Plan:
    service = incident.services[0] if incident.services else None
    policy = policy_for(config, incident.severity, service)
    svc = config.services.get(service) if service else None
    owner = next((k for k in (incident.commander, svc.owner if svc else None, config.default_owner)
                  if k and k in directory), None)
    if owner is None:
        raise PlanError(
            f"no owner for incident {incident.key}: the commander is not in the directory, and neither the "
            f"service {service!r} nor default_owner names one"
        )
    reviewers = [r for r in dict.fromkeys([*(svc.reviewers if svc else []), *policy.reviewers]) if r != owner]
    attendees = list(dict.fromkeys(
        [owner, *reviewers, *(p for p in [incident.commander, *incident.participants] if p and p in directory)]))
    named = [step.notify for step in policy.escalation if step.notify not in ROLES]
    return Plan(
        postmortem_id=postmortem_id,
        incident=incident,
        policy=policy,
        owner=owner,
        reviewers=reviewers,
        attendees=attendees,
        people=sorted(directory.with_chains([*attendees, *named])),
        tracker=policy.tracker,
        timeline_sources=policy.timeline_sources,
    )
