"""What the web app does with a tracker's ticket status delivery, whichever vendor's webhook parsed it
(closeloop.integrations.<vendor>.webhook): the ActionItemWorkflow that owns the ticket is told at once
(closeloop.client.Closeloop.signal_ticket_status, the road the sweep and the CLI take too), instead of waiting
for the reconciliation sweep.

Replay protection, by the sender's delivery id (`X-Atlassian-Webhook-Identifier`, the same on Jira's
retries; `X-GitHub-Delivery`, the same on a redelivery; a hash of the body when none is sent):
  1. the delivery log says it was seen -> 200 `{"duplicate": true}` and no signal;
  2. signal the workflow;
  3. record the delivery, only once the signal was accepted.
So a delivery whose signal failed (Temporal unavailable: 503) is not recorded, and the sender's retry is
applied. The price of recording last: two copies of one delivery arriving at the same moment (or a crash
between steps 2 and 3) can both signal. That is harmless, because each copy carries the same status and the
workflow applies a status only as a change (done to a done item, reopened to an open one do nothing).

Order, by the vendor's own time of the change (`StatusChange.version`: Jira's `timestamp`, GitHub's
`issue.updated_at`). The delivery id header is not signed, so a captured, correctly signed "closed" can be
replayed under a new id after a "reopened"; the item keeps the newest time applied to it (the store's
`ticket_event_at` and `ticket_event_status`) and a delivery older than that, or as old with the same status,
answers 202 `{"ignored": "stale"}` without a signal. As old with another status (GitHub's times are whole
seconds) cannot be ordered and is applied. The time is recorded only after the signal was accepted (a 503's
retry is not stale), by one conditional UPDATE that never moves it back; deliveries for one item take turns in
this process, so check, signal and record are not interleaved. A delivery without a time is not ordered.
The reconciliation sweep (activities/reconcile.py) is not ordered here: it signals what the tracker says now,
which is never stale, and undoes within a sweep whatever a race between web processes let through.

A ticket closeloop does not track -> 202 `{"ignored": ...}`; an item whose workflow has ended -> 202
`{"ignored": "item closed"}`."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import JSONResponse
from temporalio.service import RPCError

from closeloop.client import Closeloop
from closeloop.contract import item_workflow_id
from closeloop.integrations.base import StatusChange
from closeloop.models import ActionItem, TicketStatusEvent
from closeloop.web.requests import Reject
from closeloop.web.storage import WebStorage

log = structlog.get_logger("closeloop.web")
T = TypeVar("T")

SIGNAL_TIMEOUT = timedelta(seconds=10)  # the senders give up after ~10 s (GitHub) / ~30 s (Jira)


async def in_store(storage: Callable[[], Awaitable[WebStorage]], fn: Callable[[WebStorage], T]) -> T:
    """A blocking store call, in a thread; a database failure is 503 (the sender retries)."""
    store = await storage()
    try:
        return await asyncio.to_thread(fn, store)
    except SQLAlchemyError as e:
        log.warning("ticket_webhook_db_failed", error=type(e).__name__)
        raise Reject(503, "the database is unavailable; try again later") from None


def _by_ticket(tracker: str, key: str) -> Callable[[WebStorage], ActionItem | None]:
    return lambda store: store.records.action_item_by_ticket(tracker, key)


# one lock per action item while a delivery for it is checked, signalled and recorded (dropped when unused)
_turns: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _turn(item_id: str) -> asyncio.Lock:
    lock = _turns.get(item_id)
    if lock is None:
        lock = _turns[item_id] = asyncio.Lock()
    return lock


def is_stale(version: datetime, status: str, known: tuple[datetime, str] | None) -> bool:
    """Whether a delivery of `status` at the vendor's `version` is older than the newest one applied (`known`),
    or as old and the same."""
    if known is None:
        return False
    at, known_status = known
    return version < at or (version == at and status == known_status)


async def apply(change: StatusChange | str, source: str, delivery: str, *,
                storage: Callable[[], Awaitable[WebStorage]], closeloop: Callable[[], Awaitable[Closeloop]]) -> Any:
    if isinstance(change, str):
        log.info("ticket_webhook_ignored", source=source, delivery=delivery[:100], reason=change)
        return JSONResponse({"ignored": change}, status_code=202)
    if await in_store(storage, lambda s: s.deliveries.delivery_seen(source, delivery)):
        log.info("ticket_webhook_duplicate", source=source, delivery=delivery[:100])
        return JSONResponse({"duplicate": True}, status_code=200)
    item: ActionItem | None = None
    for key in change.keys:
        item = await in_store(storage, _by_ticket(change.tracker, key))
        if item is not None:
            break
    if item is None or not item.ticket_key:
        reason = f"{change.keys[0]} is not the ticket of a closeloop action item"
        log.info("ticket_webhook_ignored", source=source, delivery=delivery[:100], reason=reason)
        return JSONResponse({"ignored": reason}, status_code=202)
    async with _turn(item.id):
        return await _signal(change, source, delivery, item, storage=storage, closeloop=closeloop)


async def _signal(change: StatusChange, source: str, delivery: str, item: ActionItem, *,
                  storage: Callable[[], Awaitable[WebStorage]],
                  closeloop: Callable[[], Awaitable[Closeloop]]) -> Any:
    """Steps 2 and 3 for the item, in its turn: unless the delivery is stale, signal, then record."""
    workflow_id = item_workflow_id(item)
    version = change.version
    if version is not None:
        known = await in_store(storage, lambda s: s.records.ticket_event(item.id))
        if is_stale(version, change.status, known):
            log.info("ticket_webhook_stale", source=source, workflow_id=workflow_id, status=change.status,
                     version=version.isoformat(), known=known[0].isoformat() if known else None,
                     delivery=delivery[:100])
            return JSONResponse({"ignored": "stale", "workflow_id": workflow_id}, status_code=202)
    event = TicketStatusEvent(ticket_key=item.ticket_key or "", status=change.status, at=change.at,
                              source=f"{source}-webhook", resolution=change.reason, moved_to=change.moved_to)
    client = await closeloop()
    try:
        delivered = await client.signal_ticket_status(workflow_id, event, rpc_timeout=SIGNAL_TIMEOUT)
    except RPCError as e:
        log.warning("ticket_webhook_signal_failed", source=source, workflow_id=workflow_id,
                    status=e.status.name if e.status else None, delivery=delivery[:100])
        raise Reject(503, "could not reach the action item: Temporal is unavailable; try again later") from None
    if not delivered:  # ended (or never ran): nothing left to tell
        log.info("ticket_webhook_item_closed", source=source, workflow_id=workflow_id, delivery=delivery[:100])
        return JSONResponse({"ignored": "item closed", "workflow_id": workflow_id}, status_code=202)
    newest = True
    try:
        if version is not None:
            newest = await in_store(storage, lambda s: s.records.record_ticket_event(item.id, version, change.status))
        first = await in_store(storage, lambda s: s.deliveries.record_delivery(source, delivery))
    except Reject:  # signalled already: acknowledge; a replay of it may be applied again (see above)
        first = True
    log.info("ticket_webhook_signalled", source=source, workflow_id=workflow_id, ticket=item.ticket_key,
             status=change.status, moved_to=change.moved_to, delivery=delivery[:100],
             **({} if first else {"concurrent_copy": True}), **({} if newest else {"newer_known": True}))
    return JSONResponse({"workflow_id": workflow_id, "ticket_key": item.ticket_key, "status": change.status},
                        status_code=202)
