"""Ticket status webhooks of Jira Cloud and GitHub, wired by `register` into the app of closeloop.web.app:
a ticket closed, reopened, deleted or moved on the tracker is told at once to the ActionItemWorkflow that
owns it (Signal `ticket_status`), instead of waiting for the reconciliation sweep.

- `POST /webhooks/jira`: Jira Cloud admin webhooks with a secret, signed `X-Hub-Signature: sha256=<hex
  HMAC-SHA256 of the raw body>` (CLOSELOOP_JIRA_WEBHOOK_SECRET). `jira:issue_updated` whose changelog
  changes the status or resolution: status category done -> "done", or "wont_do" (the resolution named)
  when the resolution is one of `[trackers.jira] wont_do_resolutions`; out of done with the resolution
  cleared -> "reopened"; between two open statuses (To Do -> In Progress) -> no change. A `Key` change (the
  issue moved to another project) -> the issue's status with `moved_to` = the new key, for the item found
  by the old key. `jira:issue_deleted` -> "deleted". Other events, and updates that change none of these
  (comments, edits), answer 202 `{"ignored": ...}` without a signal.
- `POST /webhooks/github`: repository or organisation webhooks, signed `X-Hub-Signature-256: sha256=<hex>`
  (CLOSELOOP_GITHUB_WEBHOOK_SECRET). `X-GitHub-Event: issues`, key `repository.full_name#issue.number`:
  `closed` -> "done", or "wont_do" when `state_reason` is `not_planned` or `duplicate` (as the tracker's
  sweep reads it); `reopened` -> "reopened"; `deleted` -> "deleted"; `transferred` -> the item follows the
  issue: its state in the new repository ("open", or done / won't do as for `closed`) with `moved_to` =
  `new_repository.full_name#new_issue.number` (a transfer without `changes.new_issue` / `new_repository`
  -> "deleted": the issue left the repository and cannot be followed). `ping` -> 200; other events and
  actions -> 202 ignored.

Both follow the other webhooks: size limit first (413), then the signature (401, constant-time compare of
every configured secret; 401 too when no secret is configured), then parsing (400 malformed JSON, 422 a
missing or invalid field). A ticket closeloop does not track -> 202 `{"ignored": ...}`; an item whose
workflow has ended -> 202 `{"ignored": "item closed"}`.

Replay protection, by the sender's delivery id (`X-Atlassian-Webhook-Identifier`, the same on Jira's
retries; `X-GitHub-Delivery`, the same on a redelivery; a hash of the body when Jira sends no id):
  1. `store.deliveries.delivery_seen` -> 200 `{"duplicate": true}` and no signal;
  2. signal the workflow;
  3. `store.deliveries.record_delivery`, only once the signal was accepted.
So a delivery whose signal failed (Temporal unavailable: 503) is not recorded, and the sender's retry is
applied; a stale "closed" replayed after a "reopened" is acknowledged and changes nothing. The price of
recording last: two copies of one delivery arriving at the same moment (or a crash between steps 2 and 3)
can both signal. That is harmless, because each copy carries the same status and the workflow applies a
status only as a change (done to a done item, reopened to an open one do nothing).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from temporalio.service import RPCError

from closeloop.config import Config, JiraSettings
from closeloop.client import Closeloop
from closeloop.contract import item_workflow_id
from closeloop.models import ActionItem, TicketStatusEvent
from closeloop.store.store import Store
from closeloop.web.app import MAX_SIGNATURES, Reject, _field, _str_field, json_object, read_body
from closeloop.web.settings import ENV_GITHUB_WEBHOOK_SECRETS, ENV_JIRA_WEBHOOK_SECRETS, WebSecrets

log = structlog.get_logger("closeloop.web")

T = TypeVar("T")
ClientGetter = Callable[[], Awaitable[Closeloop]]

SIGNAL_TIMEOUT = timedelta(seconds=10)  # the senders give up after ~10 s (GitHub) / ~30 s (Jira)
MAX_REASON = 500
GITHUB_WONT_DO = {"not_planned": "not planned", "duplicate": "duplicate"}


@dataclass(frozen=True)
class StatusChange:
    """What a delivery says about one ticket: `keys` are the keys to look the item up by, in order (after a
    move: the old key, then the new one)."""

    tracker: str
    keys: tuple[str, ...]
    status: str
    at: datetime
    reason: str = ""
    moved_to: str | None = None


# --------------------------------------------------------------------------- signatures


def hub_signature_ok(body: bytes, header: str, secrets: tuple[str, ...]) -> bool:
    """True when the header's `sha256=<hex>` is the HMAC-SHA256 of the raw body under one of the secrets.
    Every secret is compared, in constant time (no early exit). Jira and GitHub sign the same way."""
    given = [part.strip()[7:].lower().encode("utf-8", "surrogateescape")
             for part in header.split(",")[:MAX_SIGNATURES] if part.strip().lower().startswith("sha256=")]
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8", "surrogateescape"), body, hashlib.sha256).hexdigest().encode()
        for signature in given:
            matched |= hmac.compare_digest(expected, signature)
    return matched


def _check_signature(request: Request, body: bytes, header_name: str, secrets: tuple[str, ...], what: str,
                     env: str, delivery: str | None) -> None:
    if not secrets:
        raise Reject(401, f"no {what} webhook secrets are configured on this server (set {env})")
    header = request.headers.get(header_name)
    if not header:
        raise Reject(401, f"missing {header_name}")
    if not hub_signature_ok(body, header, secrets):
        log.warning("ticket_webhook_bad_signature", source=what.lower(), delivery=(delivery or "")[:100])
        raise Reject(401, f"invalid {header_name}")


# --------------------------------------------------------------------------- payload helpers


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _epoch_ms(value: Any) -> datetime | None:
    if type(value) is not int:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, timezone.utc)
    except (OverflowError, ValueError, OSError):
        return None


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------- Jira


def jira_change(payload: dict[str, Any], wont_do_resolutions: list[str]) -> StatusChange | str:
    """The status change a Jira Cloud webhook reports, or why it reports none (a str: answer "ignored").
    Reject(422) when a needed field is missing or invalid."""
    event = _str_field(payload, "webhookEvent")[:100]
    if event not in ("jira:issue_updated", "jira:issue_deleted"):
        return f"event {event}"
    if not isinstance(_field(payload, "issue"), dict):
        raise Reject(422, "field issue must be an object")
    key = _str_field(payload, "issue.key").strip()[:200]
    at = _epoch_ms(payload.get("timestamp")) or _now()
    if event == "jira:issue_deleted":
        return StatusChange("jira", (key,), "deleted", at)

    changelog = payload.get("changelog")
    if changelog is not None and not isinstance(changelog, dict):
        raise Reject(422, "field changelog must be an object")
    items = _dict(changelog).get("items") or []
    if not isinstance(items, list):
        raise Reject(422, "field changelog.items must be a list")
    changed = {_text(_dict(i).get("field")).lower() for i in items}
    move = next((_dict(i) for i in items if _text(_dict(i).get("field")).lower() == "key"
                 and _text(_dict(i).get("fromString")) and _text(_dict(i).get("toString"))), None)
    if move is None and not changed & {"status", "resolution"}:
        return "no status change"

    category = _str_field(payload, "issue.fields.status.statusCategory.key").strip().lower()
    resolution = _text(_dict(_dict(_dict(payload["issue"]).get("fields")).get("resolution")).get("name"))
    if category == "done":
        wont_do = {r.casefold() for r in wont_do_resolutions}
        status, reason = ("wont_do", resolution[:MAX_REASON]) if resolution.casefold() in wont_do else ("done", "")
    else:
        # Out of done: Jira clears the resolution when an issue is reopened. A move between two open
        # statuses (To Do -> In Progress) is no status change for closeloop.
        cleared = any(_text(_dict(i).get("field")).lower() == "resolution" and _text(_dict(i).get("fromString"))
                      for i in items)
        status_name = _text(_dict(_dict(_dict(payload["issue"]).get("fields")).get("status")).get("name"))
        status = "reopened" if cleared else "open"
        reason = f"status {status_name}"[:MAX_REASON] if status_name and status == "reopened" else ""
        if status == "open" and move is None:
            return "no status change"
    if move is not None:
        old, new = _text(move.get("fromString"))[:200], _text(move.get("toString"))[:200]
        return StatusChange("jira", tuple(dict.fromkeys((old, key, new))), status, at, reason, moved_to=new)
    return StatusChange("jira", (key,), status, at, reason)


# --------------------------------------------------------------------------- GitHub


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


def _github_closed(issue: dict[str, Any]) -> tuple[str, str]:
    reason = GITHUB_WONT_DO.get(_text(issue.get("state_reason")))
    return ("wont_do", reason) if reason else ("done", "")


def github_change(event: str, payload: dict[str, Any]) -> StatusChange | str:
    """The status change a GitHub `issues` delivery reports, or why it reports none (a str)."""
    if event != "issues":
        return f"event {event[:100]}"
    action = _str_field(payload, "action")[:100]
    if action not in ("closed", "reopened", "deleted", "transferred"):
        return f"action {action}"
    issue = payload.get("issue")
    key = _github_key(payload.get("repository"), issue, ("repository", "issue"))
    issue = _dict(issue)
    at = _iso(issue.get("closed_at") if action == "closed" else None) or _iso(issue.get("updated_at")) or _now()
    if action == "closed":
        status, reason = _github_closed(issue)
        return StatusChange("github", (key,), status, at, reason)
    if action in ("reopened", "deleted"):
        return StatusChange("github", (key,), action, at)
    changes = _dict(payload.get("changes"))
    new_issue, new_repo = changes.get("new_issue"), changes.get("new_repository")
    if not isinstance(new_issue, dict) or not isinstance(new_repo, dict):
        return StatusChange("github", (key,), "deleted", at, "transferred to another repository")
    new_key = _github_key(new_repo, new_issue, ("changes.new_repository", "changes.new_issue"))
    status, reason = _github_closed(new_issue) if _text(new_issue.get("state")) == "closed" else ("open", "")
    return StatusChange("github", (key, new_key), status, at, reason or f"transferred to {new_key}",
                        moved_to=new_key)


# --------------------------------------------------------------------------- delivery


def _delivery_id(request: Request, header: str, body: bytes) -> str:
    given = (request.headers.get(header) or "").strip()
    return given[:200] if given else "sha256:" + hashlib.sha256(body).hexdigest()


def register(app: FastAPI, config: Config, secrets: WebSecrets, limit: int, client: ClientGetter,
             the_store: Callable[[], Awaitable[Store]]) -> None:
    """Add the Jira and GitHub ticket status routes; `the_store` gives the app's store (opened on first use)."""
    jira_settings = config.trackers.jira
    wont_do = (jira_settings.wont_do_resolutions if jira_settings is not None
               else JiraSettings.model_fields["wont_do_resolutions"].get_default(call_default_factory=True))

    async def db(call: Callable[[Store], T]) -> T:
        """A blocking store call, in a thread; a database failure is 503 (the sender retries)."""
        try:
            return await asyncio.to_thread(call, await the_store())
        except SQLAlchemyError as e:
            log.warning("ticket_webhook_db_failed", error=type(e).__name__)
            raise Reject(503, "the database is unavailable; try again later") from None

    async def apply(change: StatusChange | str, source: str, delivery: str) -> JSONResponse:
        if isinstance(change, str):
            log.info("ticket_webhook_ignored", source=source, delivery=delivery[:100], reason=change)
            return JSONResponse({"ignored": change}, status_code=202)
        if await db(lambda s: s.deliveries.delivery_seen(source, delivery)):
            log.info("ticket_webhook_duplicate", source=source, delivery=delivery[:100])
            return JSONResponse({"duplicate": True}, status_code=200)
        item: ActionItem | None = None
        tracker = change.tracker
        for key in change.keys:  # each call is awaited before `key` moves on
            item = await db(lambda s: s.records.action_item_by_ticket(tracker, key))
            if item is not None:
                break
        if item is None or not item.ticket_key:
            reason = f"{change.keys[0]} is not the ticket of a closeloop action item"
            log.info("ticket_webhook_ignored", source=source, delivery=delivery[:100], reason=reason)
            return JSONResponse({"ignored": reason}, status_code=202)
        workflow_id = item_workflow_id(item)
        event = TicketStatusEvent(ticket_key=item.ticket_key, status=change.status,  # type: ignore[arg-type]
                                  at=change.at, source=f"{source}-webhook", resolution=change.reason,
                                  moved_to=change.moved_to)
        closeloop = await client()
        try:
            delivered = await closeloop.signal_ticket_status(workflow_id, event, rpc_timeout=SIGNAL_TIMEOUT)
        except RPCError as e:
            log.warning("ticket_webhook_signal_failed", source=source, workflow_id=workflow_id,
                        status=e.status.name if e.status else None, delivery=delivery[:100])
            raise Reject(503, "could not reach the action item: Temporal is unavailable; try again later") from None
        if not delivered:  # ended (or never ran): nothing left to tell
            log.info("ticket_webhook_item_closed", source=source, workflow_id=workflow_id, delivery=delivery[:100])
            return JSONResponse({"ignored": "item closed", "workflow_id": workflow_id}, status_code=202)
        try:
            first = await db(lambda s: s.deliveries.record_delivery(source, delivery))
        except Reject:  # signalled already: acknowledge; a replay of it may be applied again (see above)
            first = True
        log.info("ticket_webhook_signalled", source=source, workflow_id=workflow_id, ticket=item.ticket_key,
                 status=change.status, moved_to=change.moved_to, delivery=delivery[:100],
                 **({} if first else {"concurrent_copy": True}))
        return JSONResponse({"workflow_id": workflow_id, "ticket_key": item.ticket_key, "status": change.status},
                            status_code=202)

    async def signed(request: Request, delivery_header: str, signature_header: str, vendor_secrets: tuple[str, ...],
                     what: str, env: str) -> tuple[bytes, str]:
        """The body (size limit first) and delivery id of a request whose signature checks out."""
        body = await read_body(request, limit)
        delivery = _delivery_id(request, delivery_header, body)
        _check_signature(request, body, signature_header, vendor_secrets, what, env, delivery)
        return body, delivery

    @app.post("/webhooks/jira")
    async def jira(request: Request) -> JSONResponse:
        body, delivery = await signed(request, "x-atlassian-webhook-identifier", "X-Hub-Signature",
                                      secrets.jira_webhook_secrets, "Jira", ENV_JIRA_WEBHOOK_SECRETS)
        return await apply(jira_change(json_object(body), wont_do), "jira", delivery)

    @app.post("/webhooks/github")
    async def github(request: Request) -> JSONResponse:
        body, delivery = await signed(request, "x-github-delivery", "X-Hub-Signature-256",
                                      secrets.github_webhook_secrets, "GitHub", ENV_GITHUB_WEBHOOK_SECRETS)
        event = (request.headers.get("x-github-event") or "").strip()
        if not event:
            raise Reject(400, "missing X-GitHub-Event")
        payload = json_object(body)
        if event == "ping":
            log.info("github_webhook_ping", delivery=delivery[:100])
            return JSONResponse({"ok": True}, status_code=200)
        return await apply(github_change(event, payload), "github", delivery)
