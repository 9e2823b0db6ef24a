"""Each process's PostgreSQL connection pool: `[store] pool_size` and `max_overflow`, or CLOSELOOP_DB_POOL_SIZE and
CLOSELOOP_DB_MAX_OVERFLOW, reach the engine the worker's store and the CLI's store open (deploy/README.md:
Capacity)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from closeloop.config import ConfigError, load_config
from closeloop.store.store import Store
from tests.temporal_env import TEST_CONFIG


def config_file(tmp_path: Path, store: str = "") -> Path:
    path = tmp_path / "closeloop.toml"
    path.write_text(f'data_dir = "{tmp_path}"\n' + TEST_CONFIG + f"\n[store]\n{store}\n")
    return path


def test_defaults(tmp_path: Path) -> None:
    assert load_config(config_file(tmp_path), env={}).store.pool == {"pool_size": 10, "max_overflow": 20}


def test_from_the_config_and_the_environment(tmp_path: Path) -> None:
    path = config_file(tmp_path, "pool_size = 4\nmax_overflow = 2")
    assert load_config(path, env={}).store.pool == {"pool_size": 4, "max_overflow": 2}
    env = {"CLOSELOOP_DB_POOL_SIZE": "6", "CLOSELOOP_DB_MAX_OVERFLOW": "0"}
    assert load_config(path, env=env).store.pool == {"pool_size": 6, "max_overflow": 0}


@pytest.mark.parametrize(("key", "value"), [("CLOSELOOP_DB_POOL_SIZE", "0"), ("CLOSELOOP_DB_POOL_SIZE", "many"),
                                            ("CLOSELOOP_DB_MAX_OVERFLOW", "-1")])
def test_a_bad_size_is_a_config_error(tmp_path: Path, key: str, value: str) -> None:
    field = "pool_size" if key.endswith("POOL_SIZE") else "max_overflow"
    with pytest.raises(ConfigError, match=field):
        load_config(config_file(tmp_path), env={key: value})


@pytest.mark.postgres
def test_the_worker_store_opens_that_many_connections_at_most(tmp_path: Path, pg_database_url: str) -> None:
    """On PostgreSQL: pool_size 2 and max_overflow 1 give three connections at once; a fourth waits (and times
    out here after its pool_timeout) instead of opening another."""
    from closeloop.integrations.registry import build

    path = config_file(tmp_path, "pool_size = 2\nmax_overflow = 1")
    config = load_config(path, env={"CLOSELOOP_DB_URL": pg_database_url})
    integrations = build(config)
    engine = integrations.store.db.engine
    try:
        assert (engine.pool.size(), engine.pool._max_overflow) == (2, 1)  # type: ignore[attr-defined]
        engine.pool._timeout = 0.5  # type: ignore[attr-defined]
        held = [engine.connect() for _ in range(3)]
        for conn in held:
            assert conn.execute(text("select 1")).scalar() == 1
        with pytest.raises(Exception, match="QueuePool limit of size 2 overflow 1 reached"):
            engine.connect()
        for conn in held:
            conn.close()
    finally:
        integrations.store.close()


@pytest.mark.postgres
def test_the_cli_store_uses_them(tmp_path: Path, pg_database_url: str) -> None:
    from closeloop.cli._common import open_store

    path = config_file(tmp_path, "pool_size = 3\nmax_overflow = 0")
    config = load_config(path, env={"CLOSELOOP_DB_URL": pg_database_url})

    class Obj:
        def config(self):  # type: ignore[no-untyped-def]
            return config

    store: Store = open_store(Obj())  # type: ignore[arg-type]
    try:
        assert (store.db.engine.pool.size(), store.db.engine.pool._max_overflow) == (3, 0)  # type: ignore[attr-defined]
    finally:
        store.close()
