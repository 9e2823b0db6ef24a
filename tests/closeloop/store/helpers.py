"""Shared by the store tests: sample incidents, postmortems and tickets, row counts and a UTC check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select

from closeloop.models import ActionItem, Incident, ItemStatus, Verdict
from closeloop.store.database import Database
from closeloop.store.local import LocalAdapterStorage
from closeloop.store.records import LifecycleRecords
from closeloop.store.store import Store
from closeloop.store.tables import TicketRow

UTC = UTC
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
PLUS5 = timezone(timedelta(hours=5))
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # the insights tests' now


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


# the library, metrics and effectiveness tests: lifecycles and items written as the activities write them


def lifecycle(store: Store, key: str, title: str, *, severity: str = "SEV2", services: list[str] | None = None,
              owner: str = "alice", document: str = "", resolved: datetime = NOW - timedelta(days=20),
              published: datetime | None = None, late: bool = False) -> str:
    incident = Incident(source="api", external_id=key, title=title, severity=severity,
                        services=services or ["checkout"], resolved_at=resolved)
    pid = f"postmortem/api/{key}"
    records = store.records
    records.upsert_postmortem(pid, incident, owner=owner, stage="drafting", stalled=False,
                              stage_due_at=resolved + timedelta(days=5), at=resolved)
    leave_drafting = resolved + timedelta(days=6 if late else 2)
    records.upsert_postmortem(pid, incident, owner=owner, stage="in_review", stalled=False,
                              stage_due_at=leave_drafting + timedelta(days=3), at=leave_drafting)
    if published is not None:
        records.upsert_postmortem(pid, incident, owner=owner, stage="published", stalled=False, stage_due_at=None,
                                  at=published)
        records.save_document(pid, markdown=document or f"# {title}", html="<p></p>", ref=f"local:{key}")
    return pid


def item(store: Store, pid: str, n: int, *, owner: str = "erin", kind: str = "prevent", due: datetime,
         completed: datetime | None = None, verdict: Verdict | None = None, recurrences: int = 0) -> None:
    store.records.upsert_action_item(ActionItem(
        id=f"{pid}/item-{n}", postmortem_id=pid, title=f"item {n}", owner=owner, kind=kind, due_at=due,
        status=ItemStatus.done if completed else ItemStatus.open, completed_at=completed, verdict=verdict,
        recurrences=[f"api/R{k}" for k in range(recurrences)]))
