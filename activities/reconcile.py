"""The ticket reconciliation sweep: webhooks get lost, so every few minutes (closeloop/sweep_schedules.py) the
tickets of every tracked action item are compared with the items, and each difference is signalled to the
item's workflow as a `TicketStatusEvent(source="sweep")`, as a webhook would have.

One `statuses()` call per tracker with all its keys (the tracker batches: Jira `key in (...)` pages, one
GitHub issue listing per repository), then, per item whose ticket differs:

    ticket done while the item is open          -> "done"
    ticket won't do while the item is open      -> "wont_do" (with the resolution; the owner is asked why)
    ticket open while the item is done          -> "reopened" (only when a sweep saw it closed since the
                                                   item's completion: see below)
    ticket deleted (or missing from the answer) -> "deleted"
    answered under another key (a Jira move)    -> `moved_to` = the new key, with the status as above

Where the signals come from. The activity (async, on the worker's event loop) signals the workflows itself,
through the worker's closeloop client (closeloop.client.Closeloop.signal_ticket_status, the one road every
ticket status takes), rather than returning the events for the sweep workflow to signal with
external workflow handles. Both are durable enough (a failed sweep is retried, and the next one sees the
same differences), but a workflow-side signal costs two history events per item: a sweep after a tracker
outage, or the first sweep after enabling a tracker, can signal hundreds of items, and the sweep's
history would grow with them. Here the sweep's history stays a handful of events whatever the count, and
each signal is still recorded where it matters: in the item's own history (`source: "sweep"`).

Signalled once. done, won't do and reopened change the item, so the store (where `tracked_items` reads)
stops showing the difference once the item's workflow has saved it; so do a move (the item follows the new
key) and a deletion of an open item's ticket (the item opens a new one). A deletion the workflow ignores
(the item is done), and a reopen it may ignore (an item awaiting its verdict), are remembered in the store's
delivery log (source "sweep", keyed by the item's
state and the event) after the signal went out: the next sweep does not send them again. A workflow that
no longer runs (not found, or completed) is skipped and counted, not an error.

Items of a terminated lifecycle. Terminating a lifecycle (or its item) runs no workflow code, so its open
items would stay open in the store: tracked by every sweep and nagged about by the digest, forever. So each
sweep asks Temporal whether the workflow of every open item still runs (`running`, a describe per open item,
16 at a time); one that does not is closed here as `cancelled`: its ticket gets a comment and is closed as
won't do when `[tickets] close_on_cancel` says so (a tracker that fails leaves it for the next sweep; a ticket
that is gone does not), and it is tracked no more. An item completes its workflow only after saving its last
status, so an open item without a running workflow is one that was ended from outside.

Reopened needs evidence. An item can be completed in closeloop (`closeloop item complete`) while its
ticket stays open; that is no reopening, and signalling one would revoke the completion every few minutes.
So a sweep that finds a done item with a closed ticket records that (`closed-seen`, keyed by the item's
completion time), and "reopened" is signalled only for a done item whose ticket a sweep saw closed during
this completion, or for one a sweep itself completed because its ticket was closed (`done-signalled`,
used up by the reopening). An item completed in closeloop has its ticket closed by its workflow
(activities/tickets.close_ticket), so the open-ticket case is only the moment before that close, or a
tracker that refused it. A tracker that fails
(IntegrationError) is reported in the summary and logged; the other trackers go on.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from closeloop.activities.support import heartbeat, log
from closeloop.activities.tickets import cancel_ticket
from closeloop.client import Closeloop
from closeloop.contract import item_workflow_id
from closeloop.integrations.base import IntegrationError, Ticket, Tracker
from closeloop.models import ActionItem, ItemStatus, Model, SyncSummary, TicketStatus, TicketStatusEvent, TrackerReport
from closeloop.store.store import Store

SOURCE = "sweep"
REMEMBERED = frozenset({"reopened", "deleted", "moved"})  # kinds the store may not reflect after the signal
HEARTBEAT_EVERY = 50  # signals
LIVENESS_CONCURRENCY = 16  # describes in flight
TERMINATED = "its lifecycle was ended (terminated) before the item was done"

# (workflow id, event) -> True when delivered, False when the workflow no longer runs
Signal = Callable[[str, TicketStatusEvent], Awaitable[bool]]


class SyncInput(Model):
    at: datetime  # the sweep's (workflow) time: the events carry it


def difference(item: ActionItem, ticket: Ticket | None, at: datetime, *,
               seen_closed: bool = True) -> tuple[TicketStatusEvent, list[str]] | None:
    """The event that tells the item what its tracker says, and its kinds; None when they agree.
    `seen_closed`: the ticket was seen closed since the item's completion (else an open ticket of a done
    item is no reopening: the item was completed in closeloop)."""
    key = item.ticket_key or ""
    if ticket is None or ticket.status == "deleted":
        return TicketStatusEvent(ticket_key=key, status="deleted", at=at, source=SOURCE), ["deleted"]
    status: TicketStatus | None = None
    if item.status == ItemStatus.open and ticket.status in ("done", "wont_do"):
        status = ticket.status
    elif item.status == ItemStatus.done and ticket.status == "open" and seen_closed:
        status = "reopened"
    moved_to = ticket.key if ticket.key != key else None
    kinds = [k for k in (status, "moved" if moved_to else None) if k]
    if not kinds:
        return None
    return TicketStatusEvent(
        ticket_key=key, status=status or ticket.status, at=at, source=SOURCE,
        resolution=ticket.resolution if status in ("done", "wont_do") else "", moved_to=moved_to,
    ), kinds


def _memory(*parts: str) -> str:
    return "ticket-sync:" + hashlib.sha256("|".join(parts).encode()).hexdigest()


def memory_key(item: ActionItem, event: TicketStatusEvent) -> str:
    """What a remembered signal is keyed by: the item as the store shows it, and what was said."""
    return _memory(item.id, item.ticket_key or "", item.status.value,
                   item.completed_at.isoformat() if item.completed_at else "", event.status, event.moved_to or "")


def closed_seen_key(item: ActionItem) -> str:
    """Evidence that the ticket was closed during the item's current completion."""
    return _memory("closed-seen", item.id, item.ticket_key or "",
                   item.completed_at.isoformat() if item.completed_at else "")


def done_signalled_key(item: ActionItem) -> str:
    """Evidence that a sweep completed the item because its ticket was closed (so a later open ticket is a
    reopening, even when no sweep saw the item done with its ticket closed). Used up by the reopening."""
    return _memory("done-signalled", item.id, item.ticket_key or "")


def _logger() -> Any:
    return log() if activity.in_activity() else structlog.get_logger("closeloop.reconcile")


async def _ended(items: list[ActionItem], running: Callable[[str], Awaitable[bool]]) -> set[str]:
    """Ids of the open items whose workflow no longer runs."""
    limit = asyncio.Semaphore(LIVENESS_CONCURRENCY)

    async def ended(item: ActionItem) -> str | None:
        async with limit:
            return None if await running(item_workflow_id(item)) else item.id

    found = await asyncio.gather(*(ended(i) for i in items if i.status == ItemStatus.open))
    return {i for i in found if i}


async def _cancel_item(store: Store, tracker: Callable[[str], Tracker], item: ActionItem, *, close: bool) -> bool:
    """Close an open item of an ended lifecycle as cancelled (see the module docstring); False when its tracker
    failed and the next sweep should try again."""
    try:
        await asyncio.to_thread(cancel_ticket, tracker, item, TERMINATED, close=close)
    except (ApplicationError, LookupError) as e:
        if isinstance(e, ApplicationError) and e.non_retryable:  # the ticket is gone or refuses: cancel all the same
            _logger().warning("ticket of a cancelled item not told", item=item.id, error=str(e)[:300])
        else:
            _logger().warning("ticket sweep: could not tell the ticket of a cancelled item; next sweep",
                              item=item.id, error=str(e)[:300])
            return False
    cancelled = item.model_copy(update={"status": ItemStatus.cancelled, "verdict_note": TERMINATED})
    await asyncio.to_thread(store.records.upsert_action_item, cancelled)
    _logger().info("ticket sweep: item of an ended lifecycle cancelled", item=item.id, ticket=item.ticket_key)
    return True


async def reconcile(store: Store, tracker: Callable[[str], Tracker], signal: Signal, at: datetime, *,
                    running: Callable[[str], Awaitable[bool]] | None = None,
                    close_on_cancel: bool = True) -> SyncSummary:
    """One sweep over the store's tracked items (see the module docstring). `tracker(name)` gives the
    tracker of that name (LookupError when none is configured); `signal` delivers one event; `running(id)`
    says whether a workflow runs (open items of an ended lifecycle are cancelled; None: not checked)."""
    logger = _logger()
    summary = SyncSummary(at=at)
    by_tracker: dict[str, list[ActionItem]] = defaultdict(list)
    tracked = await asyncio.to_thread(store.records.tracked_items)
    ended = await _ended(tracked, running) if running is not None else set()
    for item in tracked:
        if item.id not in ended:
            by_tracker[item.tracker].append(item)
    sent = 0
    for name, items in sorted(by_tracker.items()):
        heartbeat(f"tracker {name}: {len(items)} items")
        report = TrackerReport(tracker=name, items=len(items))
        summary.trackers.append(report)
        summary.items_checked += len(items)
        try:
            impl = tracker(name)
            before = getattr(impl, "request_count", None)
            tickets = await asyncio.to_thread(impl.statuses, [i.ticket_key for i in items if i.ticket_key])
            after = getattr(impl, "request_count", None)
            report.calls = after - before if isinstance(before, int) and isinstance(after, int) else None
        except (IntegrationError, LookupError) as e:
            report.error = str(e)[:500]
            logger.warning("ticket sweep: tracker failed", tracker=name, items=len(items), error=report.error)
            continue
        for item in items:
            ticket = tickets.get(item.ticket_key or "")
            seen_closed = True
            if item.status == ItemStatus.done and ticket is not None:
                if ticket.status in ("done", "wont_do"):
                    await asyncio.to_thread(store.deliveries.record_delivery, SOURCE, closed_seen_key(item))
                elif ticket.status == "open":
                    seen = store.deliveries.delivery_seen
                    seen_closed = (await asyncio.to_thread(seen, SOURCE, closed_seen_key(item))
                                   or await asyncio.to_thread(seen, SOURCE, done_signalled_key(item)))
                    summary.completed_in_closeloop += not seen_closed
            found = difference(item, ticket, at, seen_closed=seen_closed)
            if found is None:
                summary.unchanged += 1
                continue
            event, kinds = found
            remembered = set(kinds) <= REMEMBERED
            key = memory_key(item, event)
            if remembered and await asyncio.to_thread(store.deliveries.delivery_seen, SOURCE, key):
                summary.already_signalled += 1
                continue
            if not await signal(item_workflow_id(item), event):
                summary.workflows_gone += 1
                logger.info("ticket sweep: workflow no longer runs", item=item.id, ticket=item.ticket_key)
                continue
            if remembered:
                await asyncio.to_thread(store.deliveries.record_delivery, SOURCE, key)
            if event.status == "done" and item.status == ItemStatus.open:
                # the ticket was closed: evidence
                await asyncio.to_thread(store.deliveries.record_delivery, SOURCE, done_signalled_key(item))
            elif "reopened" in kinds:
                # used up by this reopening
                await asyncio.to_thread(store.deliveries.forget_delivery, SOURCE, done_signalled_key(item))
            summary.signals += 1
            for kind in kinds:
                summary.signalled[kind] += 1
            logger.info("ticket sweep: signalled", item=item.id, ticket=item.ticket_key, kinds=kinds,
                        moved_to=event.moved_to)
            sent += 1
            if sent % HEARTBEAT_EVERY == 0:
                heartbeat(f"tracker {name}: {sent} signals")
    for item in tracked:  # after the status pass, so a tracker's calls for them never hold up the others
        if item.id in ended and await _cancel_item(store, tracker, item, close=close_on_cancel):
            summary.cancelled += 1
    counted = [t.calls for t in summary.trackers if t.calls is not None]
    summary.calls = sum(counted) if counted else None
    summary.failures = [f"{t.tracker}: {t.error}" for t in summary.trackers if t.error]
    logger.info("ticket sweep", items=summary.items_checked, signals=summary.signals, calls=summary.calls,
                cancelled=summary.cancelled,
                **{k: v for k, v in summary.signalled.items() if v}, failures=summary.failures)
    return summary


class ReconcileActivities:
    """The ticket sweep; holds the store, the trackers (by name) and the worker's closeloop client."""

    def __init__(self, store: Store, tracker: Callable[[str], Tracker], closeloop: Closeloop, *,
                 close_on_cancel: bool = True) -> None:
        self.store = store
        self.tracker = tracker
        self.closeloop = closeloop
        self.close_on_cancel = close_on_cancel  # [tickets] close_on_cancel

    @activity.defn(name="reconcile_tickets")
    async def reconcile_tickets(self, inp: SyncInput) -> SyncSummary:
        """The sweep as an activity, on the worker's event loop (blocking store and tracker calls in threads)."""
        return await reconcile(self.store, self.tracker, self.closeloop.signal_ticket_status, inp.at,
                               running=self.closeloop.running, close_on_cancel=self.close_on_cancel)
