"""How long closeloop keeps what it no longer needs, and the floors no setting may go below. Pure data: the
config (`[retention]`), the store's prune (closeloop/store/retention.py) and the rate limits read it.

REPLAY_WINDOW: how long after a webhook delivery its sender may still send it again. The delivery log
(closeloop/web/ticket_status.py) must remember a delivery at least that long, or a replay is applied twice.
GitHub lets an admin redeliver deliveries of the past 3 days (GitHub Enterprise Server: 7 days); Jira Cloud
retries a failing delivery and lists it as failed for 72 hours (`GET /rest/api/3/webhook/failed`). So 7 days.

MAX_RATE_WINDOW: the longest window a shared rate limit may count calls over (closeloop/store/rate_limits.py
refuses a longer one), so rate events older than it never count again and may go (GitHub's content window
is 1 minute today)."""

from __future__ import annotations

from datetime import timedelta

REPLAY_WINDOW = timedelta(days=7)
MAX_RATE_WINDOW = timedelta(days=1)

# A closed lifecycle's workflow ended when its stage became terminal (its action items, children, end with
# it); the floor keeps a margin for the store's last writes and for people reading a fresh postmortem.
MIN_CLOSED_RECORDS = timedelta(days=30)

DEFAULT_DELIVERIES = timedelta(days=30)
DEFAULT_NOTIFICATIONS = timedelta(days=90)
DEFAULT_RATE_EVENTS = timedelta(days=7)
DEFAULT_EVERY = timedelta(days=1)
DEFAULT_BATCH = 1000
