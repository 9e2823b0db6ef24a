"""The stalled-work digest: every manager hears about stalled postmortems and overdue action items of
the people who report to them. Run by a Temporal Schedule (see closeloop/sweep_schedules.py)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path

from temporalio import activity

from closeloop.activities.support import external_errors, log
from closeloop.directory import Directory
from closeloop.integrations.base import Notification, Notifier
from closeloop.models import DigestResult, Model
from closeloop.rendering import render_notification
from closeloop.store.store import Store


class DigestInput(Model):
    at: datetime  # the sweep's (workflow) time: it names the digest, so a retry sends nothing twice


class DigestActivities:
    """The managers' digest; holds the store, the directory, the notifiers and the template overrides."""

    def __init__(self, store: Store, people: Directory, notifiers: list[Notifier], template_dir: Path | None) -> None:
        self.store = store
        self.people = people
        self.notifiers = notifiers
        self.template_dir = template_dir

    @activity.defn(name="send_stalled_digest")
    def send_stalled_digest(self, inp: DigestInput) -> DigestResult:
        stalled = self.store.records.stalled_postmortems()
        overdue = self.store.records.overdue_items(inp.at)
        per_manager: dict[str, list[str]] = defaultdict(list)
        for pm in stalled:
            manager = self.people.resolve_target("manager", pm.owner) or pm.owner
            due = f", due {pm.stage_due_at:%Y-%m-%d %H:%M} UTC" if pm.stage_due_at else ""
            per_manager[manager].append(f"postmortem {pm.id} ({pm.stage}{due}) owned by {pm.owner}")
        for item in overdue:
            manager = self.people.resolve_target("manager", item.owner) or item.owner
            per_manager[manager].append(
                f"action item {item.id} \"{item.title}\" owned by {item.owner}, due {item.due_at:%Y-%m-%d %H:%M} UTC"
                + (f", ticket {item.ticket_key}" if item.ticket_key else "")
            )
        day = inp.at.strftime("%Y-%m-%d")
        for manager, lines in sorted(per_manager.items()):
            person = self.people.person(manager)
            subject, body = render_notification(
                "stalled_digest", {"recipient": person.name if person else manager, "lines": lines, "at": inp.at},
                template_dir=self.template_dir,
            )
            notification = Notification(key=f"digest/{day}/{manager}", kind="stalled_digest", recipient=manager,
                                        subject=subject, body=body, at=inp.at, postmortem_id="digest")
            for notifier in self.notifiers:
                with external_errors(f"sending the digest to {manager} through {notifier.name}"):
                    notifier.send(notification, person)
        log().info("stalled digest", stalled=len(stalled), overdue=len(overdue), managers=len(per_manager))
        return DigestResult(stalled_postmortems=len(stalled), overdue_items=len(overdue),
                            managers_notified=sorted(per_manager))
