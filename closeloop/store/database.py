"""The database closeloop keeps its records in: the engine (SQLite or PostgreSQL), the Alembic upgrade, and the
session and idempotent-insert helpers every part of the store (records, local, deliveries, rate_limits) shares.
Blocking (SQLAlchemy sessions); activities call it from their thread pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_S = 30
T = TypeVar("T")


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20) -> Engine:
    """The engine on `url`. PostgreSQL: a pool of `pool_size` connections kept open and up to `max_overflow` more
    at a peak (`[store]`); SQLite: SQLAlchemy's own pool of file connections."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
            cur.execute("PRAGMA foreign_keys=ON")
            _ensure_wal(cur)
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow)


def _ensure_wal(cur: Any) -> None:
    """WAL mode is a property of the database file, so it is set once and kept. Setting it on every connection
    (as this did) asks for a lock that SQLite does not wait for: a connection opened while another process
    writes then failed at once with "database is locked". Read the mode first; switch only when needed, and
    retry the switch briefly if a writer holds the file."""
    import sqlite3
    import time

    if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() in ("wal", "memory"):
        return
    for attempt in range(50):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 49:
                raise
            time.sleep(0.1)


def upgrade(url: str) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    if url.startswith("sqlite"):
        make_engine(url).dispose()  # creates the parent directory
    command.upgrade(cfg, "head")


class Database:
    """One engine on `url` (migrated first unless `migrate=False`), its sessions, and the in-process lock that
    serialises check-then-write transactions (SQLite: one worker process; PostgreSQL adds an advisory lock)."""

    def __init__(self, url: str, *, migrate: bool = True, pool_size: int = 10, max_overflow: int = 20) -> None:
        self.url = url
        if migrate:
            upgrade(url)
        self.engine = make_engine(url, pool_size=pool_size, max_overflow=max_overflow)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # one lock for the whole database, shared by meeting bookings and rate slots
        self.write_lock = threading.Lock()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s, s.begin():
            yield s

    def insert_once(self, row: Any) -> bool:
        """Insert; False if a unique key says it is already there (the idempotent path)."""
        try:
            with self.session() as s:
                s.add(row)
            return True
        except IntegrityError:
            return False

    def write_promptly(self, work: Callable[[Connection], T], *, timeout: float = BUSY_TIMEOUT_S) -> T:
        """Run `work` in one short write transaction that gets SQLite's write lock as soon as it is free.
        SQLite's own busy handler sleeps between tries in steps that grow to 100 ms (1, 2, 5, 10, 15, 20, 25,
        25, 25, 50, 50, 100 ms), so a write queued behind another process's (the worker's) may sleep up to
        100 ms past the lock's release. On the path a webhook waits for, this tries every 0.5-2 ms instead,
        for up to `timeout` seconds (then SQLite's "database is locked" is raised). PostgreSQL: just the
        transaction (its row locks need no polling)."""
        if self.engine.dialect.name != "sqlite":
            with self.engine.begin() as conn:
                return work(conn)
        deadline = time.monotonic() + timeout
        pause = 0.0005
        with self.engine.connect() as conn:
            raw: Any = conn.connection.dbapi_connection  # a PRAGMA on the driver's connection opens no transaction
            raw.execute("PRAGMA busy_timeout=0")
            try:
                while True:
                    try:
                        with conn.begin():
                            return work(conn)
                    except OperationalError as e:
                        if "locked" not in str(e.orig) or time.monotonic() > deadline:
                            raise
                    time.sleep(pause)
                    pause = min(pause * 2, 0.002)
            finally:
                raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")

