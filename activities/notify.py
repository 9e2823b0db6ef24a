"""Tell a person something, once. Roles (owner, manager, skip_level) resolve through the directory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from closeloop.activities.support import external_errors, log
from closeloop.directory import Directory
from closeloop.integrations.base import Notification, Notifier, Tracker
from closeloop.models import Model
from closeloop.rendering import render_notification


class NotifyInput(Model):
    key: str
    kind: str
    target: str  # owner, manager, skip_level or a person key
    relative_to: str  # whose manager "manager" means
    postmortem_id: str
    item_id: str | None = None
    at: datetime
    context: dict[str, Any] = {}
    # Also put it on the action item's ticket as a comment, so it is seen where the owner works.
    tracker: str | None = None
    ticket_key: str | None = None


class NotifyActivities:
    """Notifications; holds the directory, the notifiers, the trackers (for ticket comments) and the template
    overrides. Every notifier gets every notification, each once by its key."""

    def __init__(self, people: Directory, notifiers: list[Notifier], tracker: Callable[[str], Tracker],
                 template_dir: Path | None) -> None:
        self.people = people
        self.notifiers = notifiers
        self.tracker = tracker
        self.template_dir = template_dir

    @activity.defn(name="notify")
    def notify(self, inp: NotifyInput) -> str | None:
        """Returns the person notified, or None when the role has nobody (e.g. no skip-level manager)."""
        recipient = self.people.resolve_target(inp.target, inp.relative_to)
        if recipient is None:
            log().warning("nobody to notify for role", target=inp.target, relative_to=inp.relative_to, kind=inp.kind)
            return None
        person = self.people.person(recipient)
        context = {**inp.context, "recipient": person.name if person else recipient, "role": inp.target,
                   "at": inp.at, "postmortem_id": inp.postmortem_id, "item_id": inp.item_id}
        subject, body = render_notification(inp.kind, context, template_dir=self.template_dir)
        notification = Notification(key=inp.key, kind=inp.kind, recipient=recipient, subject=subject, body=body,
                                    at=inp.at, postmortem_id=inp.postmortem_id, item_id=inp.item_id)
        for notifier in self.notifiers:
            with external_errors(f"notifying {recipient} through {notifier.name}"):
                notifier.send(notification, person)
        if inp.tracker and inp.ticket_key:
            try:
                with external_errors(f"commenting on {inp.ticket_key}"):
                    self.tracker(inp.tracker).comment(inp.ticket_key, f"{subject}\n\n{body}", inp.key)
            except ApplicationError as e:
                if not e.non_retryable:
                    raise  # the tracker is down or throttling: retry (the notification itself is sent once, by key)
                # The ticket is gone or refuses comments (deleted, moved away, no permission): the person was
                # told all the same, and the ticket sync deals with the ticket.
                log().warning("ticket comment skipped", ticket=inp.ticket_key, kind=inp.kind, error=str(e)[:300])
        return recipient
