"""Jira Cloud's ticket status webhook: `POST /webhooks/jira`, admin webhooks with a secret, signed
`X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body>` (CLOSELOOP_JIRA_WEBHOOK_SECRET, comma-separated
during a rotation). `jira:issue_updated` whose changelog changes the status or resolution: status category done
-> "done", or "wont_do" (the resolution named) when the resolution is one of `[trackers.jira]
wont_do_resolutions`; out of done with the resolution cleared -> "reopened"; between two open statuses (To Do
-> In Progress) -> no change. A `Key` change (the issue moved to another project) -> the issue's status with
`moved_to` = the new key, for the item found by the old key. `jira:issue_deleted` -> "deleted". Other events,
and updates that change none of these (comments, edits), answer 202 `{"ignored": ...}` without a signal.
The delivery id is `X-Atlassian-Webhook-Identifier` (the same on Jira's retries; not signed). Deliveries are
ordered by the webhook's `timestamp` (else `issue.fields.updated`), so an older one is stale (see
closeloop/web/ticket_status.py). Jira signs no time of sending: there is no time window to check."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from closeloop.integrations.base import StatusChange, TicketWebhook, WebhookContext
from closeloop.integrations.jira.settings import ENV_WEBHOOK_SECRETS
from closeloop.models import TicketStatus
from closeloop.web.requests import (
    Reject,
    as_dict,
    as_text,
    check_hub_signature,
    delivery_id,
    epoch_ms,
    field,
    iso_time,
    json_object,
    read_body,
    str_field,
    utc_now,
)

MAX_REASON = 500
# Atlassian documents no maximum. A delivery carries the whole issue: every field (a text field holds up to
# 32,767 characters, four bytes each in UTF-8), the changelog and the user; 10 MiB holds dozens of full fields.
MAX_BODY_BYTES = 10 * 1024 * 1024


def jira_change(payload: dict[str, Any], wont_do_resolutions: list[str]) -> StatusChange | str:
    """The status change a Jira Cloud webhook reports, or why it reports none (a str: answer "ignored").
    Reject(422) when a needed field is missing or invalid."""
    event = str_field(payload, "webhookEvent")[:100]
    if event not in ("jira:issue_updated", "jira:issue_deleted"):
        return f"event {event}"
    if not isinstance(field(payload, "issue"), dict):
        raise Reject(422, "field issue must be an object")
    key = str_field(payload, "issue.key").strip()[:200]
    fields = as_dict(as_dict(payload["issue"]).get("fields"))
    # the order of deliveries: the webhook's time (ms since the epoch), else the time the issue was last updated
    version = epoch_ms(payload.get("timestamp")) or iso_time(fields.get("updated"))
    at = version or utc_now()
    if event == "jira:issue_deleted":
        return StatusChange("jira", (key,), "deleted", at, version=version)

    changelog = payload.get("changelog")
    if changelog is not None and not isinstance(changelog, dict):
        raise Reject(422, "field changelog must be an object")
    items = as_dict(changelog).get("items") or []
    if not isinstance(items, list):
        raise Reject(422, "field changelog.items must be a list")
    changed = {as_text(as_dict(i).get("field")).lower() for i in items}
    move = next((as_dict(i) for i in items if as_text(as_dict(i).get("field")).lower() == "key"
                 and as_text(as_dict(i).get("fromString")) and as_text(as_dict(i).get("toString"))), None)
    if move is None and not changed & {"status", "resolution"}:
        return "no status change"

    category = str_field(payload, "issue.fields.status.statusCategory.key").strip().lower()
    resolution = as_text(as_dict(as_dict(as_dict(payload["issue"]).get("fields")).get("resolution")).get("name"))
    status: TicketStatus
    if category == "done":
        wont_do = {r.casefold() for r in wont_do_resolutions}
        status, reason = ("wont_do", resolution[:MAX_REASON]) if resolution.casefold() in wont_do else ("done", "")
    else:
        # Out of done: Jira clears the resolution when an issue is reopened. A move between two open
        # statuses (To Do -> In Progress) is no status change for closeloop.
        cleared = any(as_text(as_dict(i).get("field")).lower() == "resolution" and as_text(as_dict(i).get("fromString"))
                      for i in items)
        status_name = as_text(as_dict(as_dict(as_dict(payload["issue"]).get("fields")).get("status")).get("name"))
        status = "reopened" if cleared else "open"
        reason = f"status {status_name}"[:MAX_REASON] if status_name and status == "reopened" else ""
        if status == "open" and move is None:
            return "no status change"
    if move is not None:
        old, new = as_text(move.get("fromString"))[:200], as_text(move.get("toString"))[:200]
        return StatusChange("jira", tuple(dict.fromkeys((old, key, new))), status, at, reason, moved_to=new,
                            version=version)
    return StatusChange("jira", (key,), status, at, reason, version=version)


class JiraTicketWebhook(TicketWebhook):
    path = "jira"
    secret_names = (ENV_WEBHOOK_SECRETS,)
    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, wont_do_resolutions: list[str]) -> None:
        self.wont_do_resolutions = wont_do_resolutions

    async def handle(self, request: Request, ctx: WebhookContext) -> Response:
        body = await read_body(request, ctx.max_body_bytes)
        delivery = delivery_id(request, "x-atlassian-webhook-identifier", body)
        check_hub_signature(request, body, "X-Hub-Signature", ctx.secrets.values(ENV_WEBHOOK_SECRETS), "Jira",
                            ENV_WEBHOOK_SECRETS, delivery)
        return await ctx.ticket_status(jira_change(json_object(body), self.wont_do_resolutions), "jira", delivery)
