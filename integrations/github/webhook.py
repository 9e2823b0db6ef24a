"""GitHub's ticket status webhook: `POST /webhooks/github`, repository or organisation webhooks, signed
`X-Hub-Signature-256: sha256=<hex>` (CLOSELOOP_GITHUB_WEBHOOK_SECRET, comma-separated during a rotation).
`X-GitHub-Event: issues`, key `repository.full_name#issue.number`: `closed` -> "done", or "wont_do" when
`state_reason` is `not_planned` or `duplicate` (as the tracker's sweep reads it); `reopened` -> "reopened";
`deleted` -> "deleted"; `transferred` -> the item follows the issue: its state in the new repository ("open", or
done / won't do as for `closed`) with `moved_to` = `new_repository.full_name#new_issue.number` (a transfer
without `changes.new_issue` / `new_repository` -> "deleted": the issue left the repository and cannot be
followed). `ping` -> 200; other events and actions -> 202 ignored. The delivery id is `X-GitHub-Delivery`
(not signed); deliveries are ordered by `issue.updated_at`, so an older one is stale (see
closeloop/web/ticket_status.py). GitHub signs no time of sending: there is no time window to check.
Both of GitHub's content types are taken: `application/json`, and `application/x-www-form-urlencoded` (the JSON
in a `payload` form field); the signature covers the raw body either way."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from closeloop.integrations.base import StatusChange, TicketWebhook, WebhookContext
from closeloop.models import TicketStatus
from closeloop.web.requests import (
    Reject,
    as_dict,
    as_text,
    check_hub_signature,
    delivery_id,
    iso_time,
    json_object,
    read_body,
    str_field,
    utc_now,
)

MAX_REASON = 500
MAX_BODY_BYTES = 25 * 1024 * 1024  # "Payloads are capped at 25 MB" (GitHub's webhook docs)
FORM = "application/x-www-form-urlencoded"

import structlog  # noqa: E402

from closeloop.integrations.github.settings import ENV_WEBHOOK_SECRETS, WONT_DO_REASONS  # noqa: E402

log = structlog.get_logger("closeloop.web")


def _github_key(repository: Any, issue: Any, where: tuple[str, str]) -> str:
    """`owner/repo#number`, or Reject(422) naming the sender's field."""
    if not isinstance(repository, dict):
        raise Reject(422, f"field {where[0]} must be an object")
    full_name = repository.get("full_name")
    if not isinstance(full_name, str) or "/" not in full_name.strip():
        raise Reject(422, f"field {where[0]}.full_name must be a string owner/name")
    if not isinstance(issue, dict):
        raise Reject(422, f"field {where[1]} must be an object")
    number = issue.get("number")
    if type(number) is not int or number < 1:
        raise Reject(422, f"field {where[1]}.number must be a positive integer")
    return f"{full_name.strip()[:200]}#{number}"


def _github_closed(issue: dict[str, Any]) -> tuple[TicketStatus, str]:
    reason = WONT_DO_REASONS.get(as_text(issue.get("state_reason")))
    return ("wont_do", reason) if reason else ("done", "")


def github_change(event: str, payload: dict[str, Any]) -> StatusChange | str:
    """The status change a GitHub `issues` delivery reports, or why it reports none (a str)."""
    if event != "issues":
        return f"event {event[:100]}"
    action = str_field(payload, "action")[:100]
    if action not in ("closed", "reopened", "deleted", "transferred"):
        return f"action {action}"
    issue = payload.get("issue")
    key = _github_key(payload.get("repository"), issue, ("repository", "issue"))
    issue = as_dict(issue)
    closed_at = iso_time(issue.get("closed_at")) if action == "closed" else None
    version = iso_time(issue.get("updated_at"))  # the order of deliveries
    at = closed_at or version or utc_now()
    if action == "closed":
        status, reason = _github_closed(issue)
        return StatusChange("github", (key,), status, at, reason, version=version)
    if action == "reopened":
        return StatusChange("github", (key,), "reopened", at, version=version)
    if action == "deleted":
        return StatusChange("github", (key,), "deleted", at, version=version)
    changes = as_dict(payload.get("changes"))
    new_issue, new_repo = changes.get("new_issue"), changes.get("new_repository")
    if not isinstance(new_issue, dict) or not isinstance(new_repo, dict):
        return StatusChange("github", (key,), "deleted", at, "transferred to another repository", version=version)
    new_key = _github_key(new_repo, new_issue, ("changes.new_repository", "changes.new_issue"))
    status, reason = _github_closed(new_issue) if as_text(new_issue.get("state")) == "closed" else ("open", "")
    status_after: TicketStatus = status
    return StatusChange("github", (key, new_key), status_after, at, reason or f"transferred to {new_key}",
                        moved_to=new_key, version=version)


def github_payload(body: bytes, content_type: str) -> dict[str, Any]:
    """The delivery's JSON object: the body itself, or its `payload` field when GitHub sends a form
    (`Content type: application/x-www-form-urlencoded` in the webhook's settings)."""
    if content_type.split(";")[0].strip().lower() != FORM:
        return json_object(body)
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        raise Reject(400, f"malformed form body ({FORM})") from None
    payload = form.get("payload")
    if not payload or len(payload) != 1:
        raise Reject(400, f"a {FORM} delivery must carry one payload field (GitHub's form encoding)")
    return json_object(payload[0].encode("utf-8"))


class GitHubTicketWebhook(TicketWebhook):
    path = "github"
    secret_names = (ENV_WEBHOOK_SECRETS,)
    max_body_bytes = MAX_BODY_BYTES

    async def handle(self, request: Request, ctx: WebhookContext) -> Response:
        body = await read_body(request, ctx.max_body_bytes)
        delivery = delivery_id(request, "x-github-delivery", body)
        check_hub_signature(request, body, "X-Hub-Signature-256", ctx.secrets.values(ENV_WEBHOOK_SECRETS), "GitHub",
                            ENV_WEBHOOK_SECRETS, delivery)
        event = (request.headers.get("x-github-event") or "").strip()
        if not event:
            raise Reject(400, "missing X-GitHub-Event")
        payload = github_payload(body, request.headers.get("content-type", ""))
        if event == "ping":
            log.info("github_webhook_ping", delivery=delivery[:100])
            return JSONResponse({"ok": True}, status_code=200)
        return await ctx.ticket_status(github_change(event, payload), "github", delivery)
