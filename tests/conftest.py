"""Shared database fixtures: every store test runs on SQLite and on a throwaway PostgreSQL database.

PostgreSQL is expected on 127.0.0.1:5432 (user postgres, trust auth); CLOSELOOP_TEST_PG_URL overrides the
server URL. An unreachable server fails the PostgreSQL tests, unless CLOSELOOP_SKIP_POSTGRES=1 says to skip them.
Temporal fixtures live in tests/temporal_env.py, not here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from closeloop.store.store import Store

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def pg_server_url() -> str:
    return os.environ.get("CLOSELOOP_TEST_PG_URL") or DEFAULT_PG_URL


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """An autocommit engine on the server's `postgres` database, for CREATE/DROP DATABASE."""
    url = make_url(pg_server_url())
    engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure means the same thing here
        engine.dispose()
        where = url.render_as_string(hide_password=True)
        if os.environ.get("CLOSELOOP_SKIP_POSTGRES") == "1":
            pytest.skip(f"PostgreSQL unreachable at {where} and CLOSELOOP_SKIP_POSTGRES=1: {exc}")
        pytest.fail(
            f"PostgreSQL is unreachable at {where}: {exc}\n"
            "Start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start), point "
            "CLOSELOOP_TEST_PG_URL at a server, or set CLOSELOOP_SKIP_POSTGRES=1 to skip these tests.",
            pytrace=False,
        )
    yield engine
    engine.dispose()


@pytest.fixture
def pg_database_url(pg_admin: Engine) -> Iterator[str]:
    """A freshly created, uniquely named PostgreSQL database; dropped (forcibly) after the test."""
    name = f"closeloop_test_{uuid.uuid4().hex[:16]}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_server_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        with pg_admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty database URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'closeloop.db'}"
    return request.getfixturevalue("pg_database_url")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated Store on each backend."""
    s = Store(db_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sqlite_store(tmp_path) -> Iterator[Store]:
    """One migrated Store on a SQLite file, for tests that do not need both backends."""
    s = Store(f"sqlite:///{tmp_path / 'closeloop.db'}")
    try:
        yield s
    finally:
        s.close()

# Temporal fixtures (time-skipping test server, dev server, a worker per test) live in their own module.
pytest_plugins = ["tests.temporal_env"]
