"""What a person can do from a notification (Slack buttons, links in an email), by its kind: pure, so the
notify activity and the interactivity endpoint that receives a button's `action` and `value` agree.

A button that changes something carries `value` = `<postmortem id>` or `<postmortem id>#<item id>`; the
endpoint runs the same Update as the CLI (`review`, `complete`, `verdict`), as the person the chat user maps to,
and that Update's validator decides whether they may."""

from __future__ import annotations

from closeloop.integrations.base import NotificationAction
from closeloop.links import item_url, postmortem_url

DRAFT_KINDS = ("draft_requested", "reminder", "escalation", "changes_requested", "reassigned")
REVIEW_KINDS = ("review_request", "review_reminder")
ITEM_KINDS = ("item_opened", "item_reminder", "item_escalation")
VERDICT_KINDS = ("verdict_request",)

# action -> what it does (the interactivity endpoint's table)
CHANGING = {"approve": "review", "request_changes": "review", "item_done": "complete",
            "effective": "verdict", "ineffective": "verdict", "snooze": "snooze"}
SNOOZABLE = ("reminder", "item_reminder")  # the owner's own reminders (a draft's, an item's)


def value_of(postmortem_id: str, item_id: str | None = None) -> str:
    return f"{postmortem_id}#{item_id}" if item_id else postmortem_id


def parse_value(value: str) -> tuple[str, str | None]:
    """(postmortem id, item id or None) from a button's value."""
    postmortem_id, _, item_id = value.partition("#")
    return postmortem_id, item_id or None


def actions_for(kind: str, postmortem_id: str, item_id: str | None, public_url: str | None) -> list[NotificationAction]:
    """The actions a `kind` notification offers. Links need `[web] public_url`; buttons that change something
    are offered wherever the channel has an interactivity endpoint (Slack)."""
    page = postmortem_url(public_url, postmortem_id)
    found: list[NotificationAction] = []
    if kind in DRAFT_KINDS:
        if page:
            found.append(NotificationAction(action="open_draft", label="Open the draft", url=f"{page}/draft"))
        if kind in SNOOZABLE:
            found.append(NotificationAction(action="snooze", label="Snooze a day", value=value_of(postmortem_id)))
    elif kind in REVIEW_KINDS:
        if page:
            found.append(NotificationAction(action="open_postmortem", label="Read the draft", url=page))
        found += [NotificationAction(action="approve", label="Approve", value=value_of(postmortem_id)),
                  NotificationAction(action="request_changes", label="Request changes", value=value_of(postmortem_id))]
    elif kind in ITEM_KINDS and item_id:
        page = item_url(public_url, postmortem_id, item_id)
        if page:
            found.append(NotificationAction(action="open_item", label="Open the item", url=page))
        found.append(NotificationAction(action="item_done", label="Mark done", value=value_of(postmortem_id, item_id)))
        if kind in SNOOZABLE:
            found.append(NotificationAction(action="snooze", label="Snooze a day",
                                            value=value_of(postmortem_id, item_id)))
    elif kind in VERDICT_KINDS and item_id:
        found += [NotificationAction(action="effective", label="It worked", value=value_of(postmortem_id, item_id)),
                  NotificationAction(action="ineffective", label="It did not", value=value_of(postmortem_id, item_id))]
    return found
