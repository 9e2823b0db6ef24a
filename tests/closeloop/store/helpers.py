"""Shared by the store tests: sample incidents, postmortems and tickets, row counts and a UTC check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select

from closeloop.models import Incident
from closeloop.store.database import Database
from closeloop.store.local import LocalAdapterStorage
from closeloop.store.records import LifecycleRecords
from closeloop.store.tables import TicketRow

UTC = UTC
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
PLUS5 = timezone(timedelta(hours=5))


def incident(external_id: str, *, services: list[str] | None = None, started_at: datetime | None = T0,
             title: str = "Checkout is down", fingerprint: str = "", **extra: Any) -> Incident:
    extra.setdefault("resolved_at", started_at + timedelta(hours=1) if started_at else None)
    return Incident(source="pagerduty", external_id=external_id, title=title, services=services or [],
                    started_at=started_at, fingerprint=fingerprint, **extra)


def count(db: Database, column: Any) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(column.table))


def assert_utc(value: datetime) -> None:
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0), value


def postmortem(records: LifecycleRecords, pid: str = "postmortem/pagerduty/P1") -> tuple[str, Incident]:
    inc = incident(pid.rsplit("/", 1)[-1], services=["checkout"])
    records.upsert_postmortem(pid, inc, owner="alice", stage="drafting", stalled=False, stage_due_at=T0)
    return pid, inc


def ticket(local: LocalAdapterStorage, marker: str) -> TicketRow:
    return local.create_ticket(marker=marker, title=f"Fix {marker}", body="details", assignee="bob", priority="P2",
                               due_at=T0 + timedelta(days=14))
