"""The inbox's forwarder: starts the lifecycle of every incident the inbox holds as pending. It runs in one
place, `[inbox] forward_in`: in the web app (an asyncio task its lifespan starts and stops, woken at once when
a request commits a row), or in the worker (beside the Temporal worker, off the web app's CPU; it looks every
second). Either way it also polls (rows another replica or an earlier run left). It claims a batch (a lease:
several processes never forward one row at once), starts the batch's lifecycles concurrently through
`Closeloop.start_postmortem` (the workflow id dedupes a repeat, so a row forwarded twice is harmless), and
marks each row forwarded, refused (Temporal refused it as invalid: a warning, the reason kept for operators,
never tried again) or due again. While Temporal (or the store) is unreachable it backs off, bounded and
jittered, and nothing is lost: the rows stay pending."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from temporalio.service import RPCError, RPCStatusCode

from closeloop.client import Closeloop
from closeloop.models import InboxEntry

log = structlog.get_logger("closeloop.forwarder")

BATCH = 64  # rows claimed at once
CONCURRENCY = 32  # starts in flight at once
POLL = 1.0  # seconds between looks when nobody wakes the forwarder
GATHER = 0.02  # seconds a woken forwarder waits before claiming: under load, one round per batch, not per row
LEASE = timedelta(seconds=60)  # a claim's hold on its rows; longer than one start may take
START_TIMEOUT = 20.0  # seconds one start may take before it counts as "Temporal unavailable"
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 15.0  # seconds; doubled per failed round, jittered


class ForwardedInbox(Protocol):
    """What the forwarder needs of the inbox (closeloop.store.inbox.IncidentInbox)."""

    def claim(self, limit: int, lease: timedelta, *, now: datetime | None = None) -> list[InboxEntry]: ...

    def forwarded(self, ids: Iterable[int], *, now: datetime | None = None) -> None: ...

    def retry(self, ids: Iterable[int], error: str, at: datetime) -> None: ...

    def refuse(self, row_id: int, reason: str) -> None: ...


class Unavailable(Exception):
    """Temporal or the store cannot be reached now: back off and try again."""


def backoff(failures: int) -> float:
    """Seconds to wait after `failures` failed rounds in a row: doubling from BACKOFF_FIRST up to
    BACKOFF_MAX, jittered by up to half (replicas do not retry in step)."""
    base: float = min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** max(0, failures - 1))
    return base * random.uniform(0.5, 1.0)


def _why(e: BaseException) -> str:
    """An error in one line, for the row's last_error and the log (never for API clients)."""
    if isinstance(e, RPCError):
        return f"{e.status.name if e.status else 'RPC error'}: {e.message}"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class Forwarder:
    """Forwards the inbox's pending rows to Temporal; `kick()` wakes it, `run()` is the task's body."""

    def __init__(self, inbox: Callable[[], Awaitable[ForwardedInbox]], closeloop: Callable[[], Awaitable[Closeloop]],
                 *, batch: int = BATCH, concurrency: int = CONCURRENCY, poll: float = POLL) -> None:
        self._inbox, self._closeloop = inbox, closeloop
        self.batch, self.poll = batch, poll
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self.failures = 0  # failed rounds in a row
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def kick(self) -> None:
        """A row was committed: look now."""
        self._wake.set()

    def start(self) -> None:
        """Run in a task of the running loop (the web app's lifespan calls this)."""
        self._stopped = False
        self._task = asyncio.create_task(self.run(), name="inbox-forwarder")

    async def stop(self, grace: float = 10.0) -> None:
        """End the task: rows not forwarded yet stay pending for the next start (or another replica)."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=grace)
            if not done:
                log.warning("inbox_forwarder_did_not_stop", grace=grace)

    async def run(self) -> None:
        """Forward until cancelled or stopped."""
        while not self._stopped:
            self._wake.clear()  # before claiming: a kick during this round makes the next one start at once
            try:
                handled = await self.forward_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - Unavailable, or the store failing: never end the task
                self.failures += 1
                delay = backoff(self.failures)
                log.warning("inbox_forward_paused", error=_why(e), failures=self.failures,
                            retry_in=round(delay, 2))
                await asyncio.sleep(delay)
                continue
            if self.failures:
                log.info("inbox_forward_resumed", after_failures=self.failures)
                self.failures = 0
            if handled >= self.batch:
                continue  # more may be waiting
            try:  # asyncio.timeout, not wait_for: wait_for can swallow a cancel on 3.11
                async with asyncio.timeout(self.poll):
                    await self._wake.wait()
                await asyncio.sleep(GATHER)  # woken: let the rows arriving with this one join its batch
            except TimeoutError:
                pass

    async def forward_once(self) -> int:
        """Claim one batch and forward it; the number of rows claimed. Unavailable when none of them could
        be forwarded because Temporal (or the store) is unreachable (they are due again after the backoff)."""
        try:
            inbox = await self._inbox()
        except Exception as e:  # noqa: BLE001 - the store cannot be opened now
            raise Unavailable(f"the store: {_why(e)}") from None
        rows = await asyncio.to_thread(inbox.claim, self.batch, LEASE)
        if not rows:
            return 0
        try:
            closeloop = await self._closeloop()
        except Exception as e:  # noqa: BLE001 - any connect failure is "Temporal unavailable"
            error = f"Temporal is unreachable: {_why(e)}"
            await asyncio.to_thread(inbox.retry, [r.id for r in rows], error, self._later())
            raise Unavailable(error) from None
        starts: list[asyncio.Task[tuple[bool, str] | None]] = []
        try:
            for row in rows:  # one start begun per turn of the event loop: building a start request takes the
                starts.append(asyncio.create_task(self._forward(closeloop, row)))  # loop for a moment, and the
                await asyncio.sleep(0)  # requests waiting get their turn between two starts, not after a batch's
            outcomes = await asyncio.gather(*starts)
        except asyncio.CancelledError:  # stopped mid-batch: no start outlives the forwarder (the rows' lease
            for start in starts:  # runs out and the next forwarder starts them; the workflow id dedupes)
                start.cancel()
            raise
        forwarded = [row.id for row, outcome in zip(rows, outcomes, strict=True) if outcome is None]
        failed = [(row, outcome) for row, outcome in zip(rows, outcomes, strict=True) if outcome is not None]
        await asyncio.to_thread(inbox.forwarded, forwarded)
        retry: list[tuple[InboxEntry, str]] = []
        for row, (refused, why) in failed:
            if refused:
                log.warning("inbox_refused", workflow_id=row.incident.workflow_id, via=row.via, reason=why)
                await asyncio.to_thread(inbox.refuse, row.id, why)
            else:
                retry.append((row, why))
        if retry:
            at = self._later()
            for why in sorted({w for _, w in retry}):
                await asyncio.to_thread(inbox.retry, [r.id for r, w in retry if w == why], why, at)
            if not forwarded:
                raise Unavailable(retry[0][1])
        return len(rows)

    def _later(self) -> datetime:
        """When rows that failed this round are due again: after the next backoff."""
        return datetime.now(UTC) + timedelta(seconds=backoff(self.failures + 1))

    async def _forward(self, closeloop: Closeloop, row: InboxEntry) -> tuple[bool, str] | None:
        """Start the row's lifecycle: None when started (or already there), else (refused, why)."""
        async with self._slots:
            try:
                async with asyncio.timeout(START_TIMEOUT):
                    await closeloop.start_postmortem(row.incident)
            except RPCError as e:
                if e.status == RPCStatusCode.INVALID_ARGUMENT:
                    return True, f"Temporal refused the lifecycle: {e.message}"
                return False, f"Temporal is unavailable: {_why(e)}"
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a timeout, a dropped connection: tried again later
                return False, f"Temporal is unavailable: {_why(e)}"
        log.debug("inbox_forwarded", workflow_id=row.incident.workflow_id, via=row.via)
        return None
