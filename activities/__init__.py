"""Every side effect closeloop has, one small module per step. Each activity is idempotent (a retry never
sends or creates twice) and its module states its timeout and retry policy (see _shared).

Only modules are bound here (not the functions) so `activities.notify` stays the module."""

from closeloop.activities import (
    collect_timeline,
    digest,
    documents,
    notify,
    reconcile,
    record_incident,
    records,
    schedule_meeting,
    tickets,
)

ALL = [
    record_incident.record_incident,
    records.save_postmortem,
    records.save_action_item,
    records.save_review,
    records.save_timeline,
    schedule_meeting.schedule_meeting,
    collect_timeline.collect_timeline,
    documents.prepare_draft,
    documents.publish_document,
    notify.notify,
    tickets.open_ticket,
    tickets.close_ticket,
    tickets.find_recurrences,
    digest.send_stalled_digest,
    reconcile.reconcile_tickets,
]
