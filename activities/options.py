"""How workflows call activities: typed presets of timeouts and retry policies, one per kind of side effect.

The timeouts also bound how long a task of a worker that died waits before another worker retries it.
Pure data: workflows import this module inside their sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.common import RetryPolicy

# Errors whose retry cannot help (bad data); everything else is retried with backoff.
NON_RETRYABLE = ["NonRetryable", "ValidationError", "TemplateProblem"]


@dataclass(frozen=True)
class ActivityOptions:
    """What `workflow.execute_activity_method` needs besides the activity and its argument."""

    start_to_close_timeout: timedelta
    retry_policy: RetryPolicy
    heartbeat_timeout: timedelta | None = None


# The store is ours and close by: retry fast, forever.
STORE = ActivityOptions(
    start_to_close_timeout=timedelta(seconds=15),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=1), non_retryable_error_types=NON_RETRYABLE),
)

# Outside systems (notifier, tracker, calendar, publisher): an hour-long outage delays, fails nothing.
EXTERNAL = ActivityOptions(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=10), non_retryable_error_types=NON_RETRYABLE),
)

# Timeline sources are best effort: a few tries, then the timeline carries a note instead.
BEST_EFFORT = ActivityOptions(
    start_to_close_timeout=timedelta(minutes=2),
    heartbeat_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                             maximum_interval=timedelta(seconds=30), maximum_attempts=3,
                             non_retryable_error_types=NON_RETRYABLE),
)

# The retention clean-up: many small transactions, a heartbeat after each; a day's backlog fits in 30 minutes, and
# what is left waits for the next run (idempotent), so a few tries only.
HOUSEKEEPING = ActivityOptions(
    start_to_close_timeout=timedelta(minutes=30),
    heartbeat_timeout=timedelta(minutes=2),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=10), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=2), maximum_attempts=3,
                             non_retryable_error_types=NON_RETRYABLE),
)

# Periodic sweeps: one pass over many items. The next scheduled run is the real retry, so a few tries only
# (with the Schedule's SKIP overlap policy a sweep retrying forever would hold back every later run).
SWEEP = ActivityOptions(
    start_to_close_timeout=timedelta(minutes=10),
    heartbeat_timeout=timedelta(minutes=1),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=1), maximum_attempts=3,
                             non_retryable_error_types=NON_RETRYABLE),
)
