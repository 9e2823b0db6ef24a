"""Database.write_promptly against a real SQLite file whose write lock another connection holds (as the worker's
process does while it commits), and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, insert, select
from sqlalchemy.exc import OperationalError

from closeloop.store.database import BUSY_TIMEOUT_S
from closeloop.store.store import Store
from closeloop.store.tables import BusyBlockRow
from tests.closeloop.store.helpers import T0


def _busy_timeout(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one())


def _count(conn: Connection) -> int:
    """Insert a row, then count the rows: what the one transaction saw."""
    conn.execute(insert(BusyBlockRow).values(person="alice", start=T0, end=T0 + timedelta(hours=1), note="p"))
    return int(conn.execute(select(func.count()).select_from(BusyBlockRow)).scalar_one())


def _hold_the_write_lock(path: Path, seconds: float, taken: threading.Event) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock, as another process's open write transaction holds it
    taken.set()
    time.sleep(seconds)
    other.execute("COMMIT")
    other.close()


def test_a_prompt_write_waits_for_the_lock_and_then_commits(sqlite_store: Store, tmp_path: Path) -> None:
    assert _busy_timeout(sqlite_store) == BUSY_TIMEOUT_S * 1000  # connected: the file is in WAL mode from here
    taken = threading.Event()
    holder = threading.Thread(target=_hold_the_write_lock, args=(tmp_path / "closeloop.db", 0.3, taken))
    holder.start()
    assert taken.wait(5)
    began = time.monotonic()
    assert sqlite_store.db.write_promptly(_count) == 1  # no "database is locked": it tried until it was free
    waited = time.monotonic() - began
    holder.join()
    assert waited >= 0.2  # it did wait for the other transaction (which held the lock for 0.3 s)
    assert _busy_timeout(sqlite_store) == BUSY_TIMEOUT_S * 1000  # the pooled connection got its timeout back


def test_a_prompt_write_gives_up_at_its_timeout_with_sqlites_error(sqlite_store: Store, tmp_path: Path) -> None:
    assert _busy_timeout(sqlite_store) == BUSY_TIMEOUT_S * 1000
    taken = threading.Event()
    holder = threading.Thread(target=_hold_the_write_lock, args=(tmp_path / "closeloop.db", 1.0, taken))
    holder.start()
    assert taken.wait(5)
    with pytest.raises(OperationalError, match="locked"):
        sqlite_store.db.write_promptly(_count, timeout=0.1)
    holder.join()
    assert sqlite_store.db.write_promptly(_count) == 1  # nothing of the failed try was committed
    assert _busy_timeout(sqlite_store) == BUSY_TIMEOUT_S * 1000


def test_a_prompt_write_on_either_database(store: Store) -> None:
    assert store.db.write_promptly(_count) == 1
    assert store.db.write_promptly(_count) == 2
