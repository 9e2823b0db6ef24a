"""Every side effect closeloop has, as methods of small classes that hold their dependencies (the store, the
directory, the integrations), one module per step. Each activity is idempotent (a retry never sends or
creates twice); the workflows call them with the typed presets of closeloop.activities.options.

Activity names are pinned (`@activity.defn(name=...)`): they are recorded in running workflows' histories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from closeloop.activities.collect_timeline import TimelineActivities
from closeloop.activities.digest import DigestActivities
from closeloop.activities.documents import DocumentActivities
from closeloop.activities.notify import NotifyActivities
from closeloop.activities.reconcile import ReconcileActivities
from closeloop.activities.record_incident import DirectoryActivities, IncidentActivities
from closeloop.activities.records import RecordActivities
from closeloop.activities.reports import ReportActivities
from closeloop.activities.retention import RetentionActivities
from closeloop.activities.schedule_meeting import MeetingActivities
from closeloop.activities.tickets import TicketActivities
from closeloop.client import Closeloop
from closeloop.integrations.registry import Integrations
from closeloop.links import LinkSigner, link_secret
from closeloop.secrets import Secrets


def build(integrations: Integrations, closeloop: Closeloop) -> list[Callable[..., Any]]:
    """Every activity of the worker, bound to the integrations it acts through and the worker's client."""
    i = integrations
    people = i.directory
    records = RecordActivities(i.store)
    incidents = IncidentActivities(i.config, people, i.store)
    meetings = MeetingActivities(i.calendar, people)
    timeline = TimelineActivities(i.timeline_sources)
    documents = DocumentActivities(i.publishers, i.config.data_dir / "drafts", i.template_dir, i.store.insights)
    notify = NotifyActivities(people, i.notifiers, i.tracker, i.template_dir, channels=i.channels,
                              deliveries=i.store.channel_deliveries, settings=i.config.notify,
                              public_url=i.config.web.public_url, outbox=i.store.local.notifications_by_key,
                              signer=LinkSigner(link_secret(Secrets()), i.config.web.auth.link_lifetime))
    tickets = TicketActivities(people, i.tracker, i.store, close_on_cancel=i.config.tickets.close_on_cancel)
    digest = DigestActivities(i.store, people, i.notifiers, i.template_dir)
    reconcile = ReconcileActivities(i.store, i.tracker, closeloop, close_on_cancel=i.config.tickets.close_on_cancel)
    directory = DirectoryActivities(people)
    reports = ReportActivities(i.store.insights, i.publishers, people, notify, i.config.reports, i.template_dir)
    retention = RetentionActivities(i.store, i.config.retention, i.config.retention.batch_size)
    return [
        incidents.record_incident,
        directory.lookup_people,
        records.save_postmortem,
        records.save_action_item,
        records.save_review,
        records.save_timeline,
        records.link_recurrences,
        meetings.schedule_meeting,
        meetings.move_meeting,
        meetings.cancel_meeting,
        timeline.collect_timeline,
        documents.prepare_draft,
        documents.publish_document,
        documents.publish,
        notify.notify,
        notify.delivery_time,
        notify.send_reminder_digests,
        tickets.open_ticket,
        tickets.close_ticket,
        tickets.cancel_ticket,
        tickets.find_recurrences,
        digest.send_stalled_digest,
        reconcile.reconcile_tickets,
        retention.prune_store,
        reports.effectiveness_review,
    ]
