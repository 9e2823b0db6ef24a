"""Tell a person something, once. Roles (owner, manager, skip_level) resolve through the directory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from closeloop.activities.support import external_errors, log
from closeloop.config import NotifySettings
from closeloop.directory import Directory
from closeloop.integrations.base import Channel, IntegrationError, Notification, Notifier, Tracker
from closeloop.links import LinkSigner, links
from closeloop.meeting_slots import next_working_time
from closeloop.message_actions import actions_for
from closeloop.metrics import NOTIFICATIONS
from closeloop.models import Model, Person
from closeloop.rendering import render_notification
from closeloop.store.outbox import ChannelDeliveries


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


# Kinds that happen once per postmortem: announced once, however many people they went to.
ONCE_PER_POSTMORTEM = ("published", "cancelled")


# A person with `reminders = "digest"` gets these in one message a day (send_reminder_digests), not one by one.
REMINDER_KINDS = ("reminder", "review_reminder", "item_reminder")
DIGEST = "digest"  # the channel_deliveries channel of what waits for the digest


class ReminderDigestInput(Model):
    at: datetime  # the workflow's now: the digest's day


class DeliveryTimeInput(Model):
    kind: str
    target: str
    relative_to: str
    at: datetime  # the workflow's now


class NotifyActivities:
    """Notifications; holds the directory, the notifiers (every notification is recorded by each), the
    channels that reach people (each notification goes through the first of the person's channels that
    reaches them), the trackers (for ticket comments) and the template overrides."""

    def __init__(self, people: Directory, notifiers: list[Notifier], tracker: Callable[[str], Tracker],
                 template_dir: Path | None, *, channels: Mapping[str, Channel] | None = None,
                 deliveries: ChannelDeliveries | None = None, settings: NotifySettings | None = None,
                 public_url: str | None = None,
                 outbox: Callable[[list[str]], list[Any]] | None = None, signer: LinkSigner | None = None) -> None:
        self.people = people
        self.notifiers = notifiers
        self.tracker = tracker
        self.template_dir = template_dir
        self.channels = dict(channels or {})
        self.deliveries = deliveries
        self.settings = settings or NotifySettings()
        self.public_url = public_url
        self.signer = signer  # signs each person's links (closeloop.links), when the web app's key is set
        self.outbox = outbox  # notification keys -> the outbox's rows (their subjects), for the digests
        if self.channels and deliveries is None:
            raise ValueError("channels need the store's channel_deliveries")

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
        if inp.context.get("unavailable"):  # who cannot make the meeting, by name; and whether it is the recipient
            context["unavailable_names"] = [self._name(k) for k in inp.context["unavailable"]]
            context["recipient_unavailable"] = recipient in inp.context["unavailable"]
        subject, body = render_notification(inp.kind, context, template_dir=self.template_dir)
        notification = Notification(key=inp.key, kind=inp.kind, recipient=recipient, subject=subject, body=body,
                                    at=inp.at, postmortem_id=inp.postmortem_id, item_id=inp.item_id,
                                    links=links(self.public_url, inp.postmortem_id, inp.item_id,
                                                person=recipient, signer=self.signer),
                                    actions=actions_for(inp.kind, inp.postmortem_id, inp.item_id, self.public_url))
        self.record(notification, person)
        if person is not None and person.reminders == "digest" and inp.kind in REMINDER_KINDS and self.deliveries:
            self.deliveries.queue(inp.key, DIGEST, person.key, person.key)  # the day's digest brings it
        elif person is not None:
            self.reach(notification, person)
        if inp.kind in self.settings.announce or (inp.kind == "published" and context.get("document_refs")):
            self.announce(inp, context)
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

    @activity.defn(name="delivery_time")
    def delivery_time(self, inp: DeliveryTimeInput) -> datetime:
        """When a notification of `kind` to `target` may go out: `at` itself when its kind may go out at any
        hour (`[notify] any_hour`) or nobody fills the role, else the next working hour (`[notify]
        working_hours`) in the recipient's time zone."""
        if not self.settings.defer_to_working_hours or inp.kind in self.settings.any_hour:
            return inp.at
        recipient = self.people.resolve_target(inp.target, inp.relative_to)
        person = self.people.person(recipient) if recipient else None
        if person is None:
            return inp.at
        return next_working_time(inp.at, person.timezone, self.settings.working_hours)

    def _name(self, key: str) -> str:
        person = self.people.person(key)
        return person.name if person else key

    @activity.defn(name="send_reminder_digests")
    def send_reminder_digests(self, inp: ReminderDigestInput) -> int:
        """Everyone who takes reminders as a digest gets one message with the reminders that waited since the
        last one, through their channels (and in the outbox). The number of digests sent. Idempotent: the
        digest's key is the person and the day, and what it carried is marked sent after it went out."""
        if self.deliveries is None or self.outbox is None:
            return 0
        waiting: dict[str, list[str]] = {}
        for row in self.deliveries.queued(DIGEST):
            waiting.setdefault(row.recipient, []).append(row.key)
        sent = 0
        for key, keys in waiting.items():
            person = self.people.person(key)
            found = {n.key: n for n in self.outbox(keys)}
            items = [{"subject": found[k].subject, "postmortem_id": found[k].postmortem_id,
                      "url": (links(self.public_url, found[k].postmortem_id, found[k].item_id, person=key,
                                    signer=self.signer).get("item")
                              or links(self.public_url, found[k].postmortem_id, None, person=key,
                                       signer=self.signer).get("postmortem"))}
                     for k in keys if k in found]
            digest_key = f"reminder-digest/{key}/{inp.at:%Y-%m-%d}"
            if person is not None and items:
                subject, body = render_notification("reminder_digest", {
                    "recipient": person.name, "items": items, "at": inp.at}, template_dir=self.template_dir)
                digest = Notification(key=digest_key, kind="reminder_digest", recipient=key, subject=subject,
                                      body=body, at=inp.at, postmortem_id=items[0]["postmortem_id"])
                for notifier in self.notifiers:
                    with external_errors(f"the reminder digest for {key} through {notifier.name}"):
                        notifier.send(digest, person)
                self.reach(digest, person)
                sent += 1
            for k in keys:
                self.deliveries.sent(k, DIGEST, key, key, digest_key)
        log().info("reminder digests sent", digests=sent, reminders=sum(len(k) for k in waiting.values()))
        return sent

    def deliver(self, notification: Notification, person: Person | None) -> str | None:
        """A notification made elsewhere (a report): recorded by every notifier, then sent through the person's
        first channel that reaches them (once per key, as `notify` does). The channel that took it, or None."""
        self.record(notification, person)
        return self.reach(notification, person) if person is not None else None

    def record(self, notification: Notification, person: Person | None) -> None:
        """Every notifier records it (the outbox, the log), once per key."""
        for notifier in self.notifiers:
            with external_errors(f"notifying {notification.recipient} through {notifier.name}"):
                if notifier.send(notification, person):
                    NOTIFICATIONS.labels(notifier.name, "recorded").inc()

    def announce(self, inp: NotifyInput, context: dict[str, Any]) -> None:
        """Post the notification to the rooms `[notify] announce` names for its kind, once each. A kind that
        happens once per postmortem (published, cancelled) is posted once however many people it went to. A
        published postmortem is also posted to the rooms of `published.<publisher>`, with that publisher's link."""
        assert self.deliveries is not None
        once = inp.kind in ONCE_PER_POSTMORTEM
        posts = [(inp.kind, room, context) for room in self.settings.announce.get(inp.kind, [])]
        if inp.kind == "published":
            for publisher, ref in dict(context.get("document_refs") or {}).items():
                posts += [(f"published.{publisher}", room, {**context, "document_ref": ref, "publisher": publisher})
                          for room in self.settings.announce.get(f"published.{publisher}", [])]
        for kind, room, ctx in posts:
            name, _, where = room.partition(":")
            channel = self.channels.get(name)
            if channel is None:
                continue
            key = f"{inp.postmortem_id}/announce/{kind}/{room}" if once else f"{inp.key}/announce/{room}"
            done = self.deliveries.get(key, name)
            if done is not None and done.status in ("sent", "failed"):
                continue
            subject, body = render_notification(inp.kind, {**ctx, "recipient": None, "role": "room"},
                                                template_dir=self.template_dir)
            message = Notification(key=key, kind=inp.kind, recipient=room, subject=subject, body=body, at=inp.at,
                                   postmortem_id=inp.postmortem_id, item_id=inp.item_id,
                                   links=links(self.public_url, inp.postmortem_id, inp.item_id))
            self.deliveries.sending(key, name, room, where)
            try:
                message_id = channel.post(message, where)
            except IntegrationError as e:
                if e.retryable:
                    NOTIFICATIONS.labels(name, "retried").inc()
                    with external_errors(f"announcing in {room}"):
                        raise
                self.deliveries.failed(key, name, room, where, str(e))
                NOTIFICATIONS.labels(name, "failed").inc()
                log().warning("announcement failed for good", room=room, kind=kind, error=str(e)[:300])
                continue
            self.deliveries.sent(key, name, room, where, message_id)
            NOTIFICATIONS.labels(name, "sent").inc()
            log().info("announced", room=room, kind=kind, message_id=message_id)

    def channel_order(self, person: Person, kind: str | None = None) -> list[str]:
        """The channels to try, in order, those configured here: `[notify] kinds` for this kind, else the
        person's own `channels`, else `[notify] channels`."""
        if kind is not None and kind in self.settings.kinds:
            names = self.settings.kinds[kind]
        else:
            names = person.channels if person.channels is not None else self.settings.channels
        return [n for n in dict.fromkeys(names) if n in self.channels]

    def reach(self, notification: Notification, person: Person) -> str | None:
        """Send through the first of the person's channels that reaches them; the channel that took it, or None.
        A channel that already took this key (recorded; or found at the provider, when an earlier try recorded
        "sending" and never came back) sends nothing again. One that fails for good is recorded, reported once,
        and the next is tried. What a retry may fix (IntegrationError retryable) is raised: the activity is
        retried with backoff, nothing falls back."""
        assert self.deliveries is not None or not self.channels
        for name in self.channel_order(person, notification.kind):
            channel = self.channels[name]
            assert self.deliveries is not None
            done = self.deliveries.get(notification.key, name)
            if done is not None and done.status == "sent":
                return name
            if done is not None and done.status == "failed":
                continue
            try:  # finding the address may ask the provider (Slack's users.lookupByEmail)
                address = channel.address(person)
            except IntegrationError as e:
                if e.retryable:
                    with external_errors(f"finding {person.key}'s address on {name}"):
                        raise
                self._failed_for_good(notification, person, name, "", str(e))
                continue
            if not address:
                continue
            try:
                # Ask the provider only when an earlier try may have sent it (it recorded "sending" and did not
                # come back): a search costs a call that providers limit (Slack's conversations.history).
                found = channel.find_sent(notification, person, address) if done is not None else None
                if not found:
                    self.deliveries.sending(notification.key, name, person.key, address)
                message_id = found or channel.deliver(notification, person, address)
            except IntegrationError as e:
                if e.retryable:
                    NOTIFICATIONS.labels(name, "retried").inc()
                    with external_errors(f"notifying {person.key} through {name}"):
                        raise
                self._failed_for_good(notification, person, name, address, str(e))
                continue
            self.deliveries.sent(notification.key, name, person.key, address, message_id)
            if not found:
                NOTIFICATIONS.labels(name, "sent").inc()
            log().info("notification delivered" if not found else "notification found delivered already",
                       channel=name, to=person.key, kind=notification.kind, message_id=message_id)
            return name
        if self.channel_order(person, notification.kind):
            log().warning("no channel reached the person; the notification is in the outbox only",
                          to=person.key, kind=notification.kind,
                          channels=self.channel_order(person, notification.kind))
        return None

    def _failed_for_good(self, notification: Notification, person: Person, channel: str, address: str,
                         error: str) -> None:
        assert self.deliveries is not None
        first = self.deliveries.failed(notification.key, channel, person.key, address, error)
        NOTIFICATIONS.labels(channel, "failed").inc()
        log().warning("channel failed for good; trying the person's next channel", channel=channel, to=person.key,
                      kind=notification.kind, error=error[:300])
        operator = self.settings.operator
        if not first or not operator:
            return
        # Once per channel and person (the key), to the operator's outbox record and their own channels.
        report = Notification(
            key=f"channel-failed/{channel}/{person.key}", kind="channel_failed", recipient=operator,
            subject=f"closeloop cannot reach {person.name} through {channel}",
            body=(f"Delivering \"{notification.subject}\" to {person.name} ({person.key}) through {channel} "
                  f"failed, and a retry will not fix it:\n\n{error[:500]}\n\nFix the address or the channel's "
                  f"settings. closeloop tries {person.name}'s next channel meanwhile."),
            at=notification.at, postmortem_id=notification.postmortem_id, item_id=notification.item_id)
        operator_person = self.people.person(operator)
        for notifier in self.notifiers:
            with external_errors(f"telling the operator {operator} through {notifier.name}"):
                notifier.send(report, operator_person)
        if operator_person is not None and operator_person.key != person.key:
            self.reach(report, operator_person)
