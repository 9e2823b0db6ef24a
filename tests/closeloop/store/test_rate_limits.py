"""RateLimits against real databases (the `rate_limits` fixture): a sliding window per bucket, shared by
every process on the database."""

from __future__ import annotations

from datetime import timedelta

from closeloop.store.rate_limits import RateLimits
from closeloop.store.store import Store
from tests.closeloop.store.helpers import T0


def test_take_rate_slot_counts_within_the_window(rate_limits: RateLimits) -> None:
    window = timedelta(minutes=1)
    for i in range(3):
        assert rate_limits.take_rate_slot("gh", limit=3, window=window, now=T0 + timedelta(seconds=i)) == 0
    wait = rate_limits.take_rate_slot("gh", limit=3, window=window, now=T0 + timedelta(seconds=10))
    assert wait == 50.0  # the oldest of the last 3 (at 0 s) leaves the window at 60 s
    assert rate_limits.take_rate_slot("other", limit=3, window=window, now=T0 + timedelta(seconds=10)) == 0
    assert rate_limits.take_rate_slot("gh", limit=3, window=window, now=T0 + timedelta(seconds=60)) == 0
    wait = rate_limits.take_rate_slot("gh", limit=3, window=window, now=T0 + timedelta(seconds=60.5))
    assert wait == 0.5  # slots at 1, 2 and 60 s: the one at 1 s frees at 61 s


def test_take_rate_slot_holds_across_processes(db_url: str) -> None:
    """Four Store objects (as four worker processes would have) race for 10 slots: exactly 10 are granted."""
    from concurrent.futures import ThreadPoolExecutor

    stores = [Store(db_url) for _ in range(4)]
    try:
        def take(i: int) -> float:
            return stores[i % 4].rate_limits.take_rate_slot("github/create", limit=10, window=timedelta(minutes=1),
                                                            now=T0)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(take, range(40)))
    finally:
        for s in stores:
            s.close()
    assert results.count(0.0) == 10
    assert all(r == 60.0 for r in results if r)
