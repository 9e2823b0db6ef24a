"""The Store as a whole, against real databases: one Database shared by its concerns, and datetimes that come
back aware and in UTC whichever concern wrote them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from closeloop.store.store import Store
from closeloop.store.tables import IncidentRow
from tests.closeloop.store.helpers import PLUS5, T0, UTC, assert_utc, incident

# --------------------------------------------------------------------------- one database


def test_concerns_share_one_database(store: Store) -> None:
    assert all(c.db is store.db for c in (store.records, store.local, store.deliveries, store.rate_limits))
    assert store.engine is store.db.engine
    pid = "postmortem/pagerduty/P1"
    store.records.upsert_postmortem(pid, incident("P1"), owner="alice", stage="drafting", stalled=False,
                                    stage_due_at=None)
    assert store.local.record_notification(key="k", kind="reminder", recipient="alice", subject="s", body="b",
                                           at=T0, postmortem_id=pid, item_id=None) is True
    assert [n.key for n in store.local.notifications(pid)] == ["k"]


# --------------------------------------------------------------------------- datetimes


def test_datetimes_come_back_aware_utc(store: Store) -> None:
    local = T0.astimezone(PLUS5)
    naive = datetime(2025, 3, 10, 12, 0)  # naive values are taken as UTC
    inc = incident("P1", started_at=local)
    store.records.record_incident(inc)
    store.records.upsert_postmortem("postmortem/pagerduty/P1", inc, owner="alice", stage="drafting", stalled=False,
                                    stage_due_at=naive)
    t = store.local.create_ticket(marker="m", title="t", body="b", assignee="a", priority="P3", due_at=local)

    with store.db.session() as s:
        row = s.scalar(select(IncidentRow).where(IncidentRow.external_id == "P1"))
        values = [row.started_at, row.resolved_at, row.recorded_at]
    pm = store.records.get_postmortem("postmortem/pagerduty/P1")
    values += [pm.stage_due_at, pm.updated_at]
    (fresh,) = store.local.tickets()
    values += [fresh.due_at, fresh.created_at, fresh.updated_at]

    for value in values:
        assert_utc(value)
    assert row.started_at == T0 and row.started_at.tzinfo == UTC
    assert row.resolved_at == T0 + timedelta(hours=1)
    assert pm.stage_due_at == T0
    assert fresh.due_at == T0 == t.due_at
    assert abs(datetime.now(UTC) - row.recorded_at) < timedelta(minutes=5)
