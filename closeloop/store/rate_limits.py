"""Rate limits shared by every process on one database: a sliding window of calls per bucket (the GitHub
tracker paces issue and comment creation with it)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, text

from closeloop.retention import MAX_RATE_WINDOW
from closeloop.store.database import Database
from closeloop.store.tables import RateEventRow


class RateLimits:
    def __init__(self, db: Database) -> None:
        self.db = db

    def take_rate_slot(self, bucket: str, *, limit: int, window: timedelta, now: datetime | None = None) -> float:
        """Count one call against `limit` calls per `window` in `bucket`, shared by every process on this
        database. Returns 0 when the call may go ahead (and is counted), else the seconds until a slot frees
        (nothing counted): the caller retries then, through its activity's retry, never by sleeping. `window` is
        at most MAX_RATE_WINDOW (1 day), so retention may delete older events (`[retention] rate_events`)."""
        if window > MAX_RATE_WINDOW:
            raise ValueError(f"a rate limit window is at most {MAX_RATE_WINDOW} (retention deletes older events)")
        now = now or datetime.now(UTC)
        with self.db.write_lock, self.db.session() as s:
            if s.bind is not None and s.bind.dialect.name == "postgresql":
                digest = int.from_bytes(hashlib.sha256(bucket.encode()).digest()[:4], "big")
                s.execute(text("SELECT pg_advisory_xact_lock(7042, :k)"), {"k": digest - (1 << 31)})
            s.execute(delete(RateEventRow).where(RateEventRow.bucket == bucket, RateEventRow.at <= now - window))
            recent = list(s.scalars(select(RateEventRow.at).where(RateEventRow.bucket == bucket)
                                    .order_by(RateEventRow.at)))
            if len(recent) >= limit:
                return max((recent[len(recent) - limit] + window - now).total_seconds(), 0.001)
            s.add(RateEventRow(bucket=bucket, at=now))
            return 0.0
