"""closeloop's Prometheus metrics (prometheus-client). The names and labels are a contract: deploy/README.md's
"Metrics" table, the Grafana dashboard and tests/deploy read them.

Counters and histograms are counted where things happen (notifications in activities/notify.py, tracker calls
and rate-limit waits in the trackers, webhook latency in the web app). The lifecycle gauges (by stage, stalled,
overdue) are read from the store when scraped (`LifecycleGauges`), at most every `ttl` seconds: every process that
serves them reports the same numbers, so dashboards take their `max`, not their sum.

`exposition(registry, extra)` is what `/metrics` answers: this process's metrics, then `extra` (the Temporal SDK's,
which its runtime serves on an internal port: see closeloop/telemetry.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from closeloop.readmodel import LiveCounts

CONTENT_TYPE = CONTENT_TYPE_LATEST

NOTIFICATIONS = Counter(
    "closeloop_notifications", "Notifications handled, by channel (log: the outbox record every notification gets; "
    "email, slack, ...: delivery) and outcome (recorded, sent, failed: for good; retried: a retryable error)",
    ["channel", "outcome"])
TRACKER_CALLS = Counter(
    "closeloop_tracker_calls", "Calls to a tracker's API (jira: every HTTP request; github: every API operation)",
    ["tracker"])
TRACKER_RATE_LIMIT_WAITS = Counter(
    "closeloop_tracker_rate_limit_waits", "Tracker calls that hit a rate limit and wait (a 429, a 403 with "
    "Retry-After, or closeloop's own pacing of GitHub's content creation)", ["tracker"])
WEBHOOK_SECONDS = Histogram(
    "closeloop_webhook_seconds", "Time to answer a webhook delivery or an incident API call, by endpoint kind "
    "(incident, ticket, interaction, api)", ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))


class LifecycleGauges(Collector):
    """`closeloop_lifecycles{stage}`, `closeloop_stalled_postmortems` and `closeloop_overdue_items`, read through
    `read()` (the store's counts) when scraped, cached for `ttl` seconds. A failing read reports nothing for these
    (the scrape still succeeds) and is counted in `closeloop_gauge_read_errors`."""

    def __init__(self, read: Callable[[], LiveCounts], ttl: float = 15.0) -> None:
        self.read = read
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, LiveCounts] | None = None
        self.errors = 0

    def counts(self) -> LiveCounts | None:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.ttl:
                try:
                    self._cached = (now, self.read())
                except Exception:  # noqa: BLE001 - the database is down: no gauges this time, readiness says why
                    self.errors += 1
                    return None
            return self._cached[1]

    def collect(self) -> Iterator[Metric]:
        counts = self.counts()
        errors = GaugeMetricFamily("closeloop_gauge_read_errors", "Failed reads of the lifecycle gauges")
        errors.add_metric([], self.errors)
        yield errors
        if counts is None:
            return
        stages = GaugeMetricFamily("closeloop_lifecycles", "Lifecycles not closed, by stage", labels=["stage"])
        for stage, n in sorted(counts.stages.items()):
            stages.add_metric([stage], n)
        yield stages
        stalled = GaugeMetricFamily("closeloop_stalled_postmortems", "Postmortems stalled past their stage's due time")
        stalled.add_metric([], counts.stalled)
        yield stalled
        overdue = GaugeMetricFamily("closeloop_overdue_items", "Open action items past their due date")
        overdue.add_metric([], counts.overdue)
        yield overdue

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected on scrape only: registering it must not read the store


def registry_with(gauges: LifecycleGauges | None) -> CollectorRegistry:
    """This process's registry: the default one (the counters above, process and platform metrics) plus the
    gauges, in a registry of their own so each app (tests run several in one process) has its own."""
    own = CollectorRegistry(auto_describe=False)
    if gauges is not None:
        own.register(gauges)
    return own


def exposition(own: CollectorRegistry | None = None, extra: str = "") -> bytes:
    """The text `/metrics` answers: the default registry, `own`, then `extra` (another exposition text)."""
    text = generate_latest(REGISTRY)
    if own is not None:
        text += generate_latest(own)
    if extra:
        text += extra.encode() if extra.endswith("\n") else (extra + "\n").encode()
    return text
