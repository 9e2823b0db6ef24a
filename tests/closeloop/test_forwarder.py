"""The inbox's forwarder on a real store, with Temporal's side held open: stopping it mid-batch leaves no
start running behind it (the rows stay claimed until their lease runs out, then the next forwarder has them)."""

from __future__ import annotations

import asyncio
from typing import Any

from closeloop.forwarder import Forwarder
from closeloop.models import Incident
from closeloop.store.store import Store
from tests.temporal_env import incident

ROWS = 50


class HeldStarts:
    """Stands in for closeloop.client.Closeloop at the Temporal boundary: every start waits until cancelled."""

    def __init__(self) -> None:
        self.begun: list[str] = []
        self.cancelled: list[str] = []
        self.first = asyncio.Event()

    async def start_postmortem(self, incident: Incident) -> Any:
        self.begun.append(incident.external_id)
        self.first.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(incident.external_id)
            raise


async def test_stopping_mid_batch_cancels_the_starts_it_began(store: Store) -> None:
    """The forwarder begins one start per turn of the event loop; it is stopped while it is still beginning
    them (after the first of 50): every start it began is cancelled, and none begins afterwards."""
    for n in range(ROWS):
        assert store.inbox.receive(incident(f"INC-HELD-{n}"), "api")
    starts = HeldStarts()

    async def inbox() -> Any:
        return store.inbox

    async def closeloop() -> Any:
        return starts

    forwarder = Forwarder(inbox, closeloop, batch=ROWS, concurrency=ROWS)
    forwarder.start()
    await asyncio.wait_for(starts.first.wait(), 30)
    await forwarder.stop(grace=5)
    begun = list(starts.begun)
    assert 1 <= len(begun) < ROWS  # stopped while still beginning them
    for _ in range(5):
        await asyncio.sleep(0)
    assert starts.begun == begun  # nothing began after the stop
    assert sorted(starts.cancelled) == sorted(begun)
    assert store.inbox.counts() == {"pending": ROWS}  # not forwarded: due again when the lease runs out
