"""The stalled-work digest: every manager hears about stalled postmortems and overdue action items of
the people who report to them. Run by a Temporal Schedule (see closeloop/schedules.py)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from temporalio import activity

from closeloop.activities._shared import deps, log
from closeloop.models import Model
from closeloop.rendering import render_notification
from closeloop.integrations.base import Notification


class DigestInput(Model):
    at: datetime  # the sweep's (workflow) time: it names the digest, so a retry sends nothing twice


class DigestResult(Model):
    stalled_postmortems: int
    overdue_items: int
    managers_notified: list[str]


@activity.defn
def send_stalled_digest(inp: DigestInput) -> DigestResult:
    d = deps()
    stalled = d.store.records.stalled_postmortems()
    overdue = d.store.records.overdue_items(inp.at)
    per_manager: dict[str, list[str]] = defaultdict(list)
    for pm in stalled:
        manager = d.config.resolve_target("manager", pm.owner) or pm.owner
        due = f", due {pm.stage_due_at:%Y-%m-%d %H:%M} UTC" if pm.stage_due_at else ""
        per_manager[manager].append(f"postmortem {pm.id} ({pm.stage}{due}) owned by {pm.owner}")
    for item in overdue:
        manager = d.config.resolve_target("manager", item.owner) or item.owner
        per_manager[manager].append(
            f"action item {item.id} \"{item.title}\" owned by {item.owner}, due {item.due_at:%Y-%m-%d %H:%M} UTC"
            + (f", ticket {item.ticket_key}" if item.ticket_key else "")
        )
    day = inp.at.strftime("%Y-%m-%d")
    for manager, lines in sorted(per_manager.items()):
        person = d.config.person(manager)
        subject, body = render_notification(
            "stalled_digest", {"recipient": person.name if person else manager, "lines": lines, "at": inp.at},
            template_dir=d.template_dir,
        )
        d.notifier.send(Notification(key=f"digest/{day}/{manager}", kind="stalled_digest", recipient=manager,
                                     subject=subject, body=body, at=inp.at, postmortem_id="digest"), person)
    log().info("stalled digest", stalled=len(stalled), overdue=len(overdue), managers=len(per_manager))
    return DigestResult(stalled_postmortems=len(stalled), overdue_items=len(overdue),
                        managers_notified=sorted(per_manager))
