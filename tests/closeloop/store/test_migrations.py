"""The Alembic migrations build exactly the schema the SQLAlchemy tables describe, and undo it cleanly."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from closeloop.store.database import MIGRATIONS, make_engine, upgrade
from closeloop.store.insights import FTS_TABLE, PG_SEARCH_COLUMN, PG_SEARCH_INDEX
from closeloop.store.tables import Base


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def _modelled(name: str | None, kind: str, _parent: object) -> bool:
    """What the tables describe; the search structures are the database's own (migration 0007: an FTS5 table
    and its shadow tables on SQLite; 0008: a stored tsvector column and its GIN index on PostgreSQL)."""
    if kind == "table" and name and name.startswith(FTS_TABLE):
        return False
    if kind == "column" and name == PG_SEARCH_COLUMN:
        return False
    return not (kind == "index" and name == PG_SEARCH_INDEX)


def schema_diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True,
                                                         "include_name": _modelled})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_head_matches_models(db_url: str) -> None:
    upgrade(db_url)
    assert schema_diff(db_url) == []


def test_downgrade_to_base_then_upgrade_again(db_url: str) -> None:
    cfg = alembic_config(db_url)
    upgrade(db_url)
    assert set(Base.metadata.tables) <= table_names(db_url)

    command.downgrade(cfg, "base")
    assert table_names(db_url) <= {"alembic_version"}

    command.upgrade(cfg, "head")
    assert set(Base.metadata.tables) <= table_names(db_url)
    assert schema_diff(db_url) == []


def test_processes_upgrading_one_postgresql_database_at_once_take_turns(pg_database_url: str) -> None:
    """Pods, the migration Job and new workers may all run `db upgrade` on an empty database at the same moment:
    each takes the migrations' advisory lock, one migrates, the others wait and find the schema current. Here in
    separate processes, as in a deployment, all started together."""
    import subprocess
    import sys

    script = ("import sys; from closeloop.store.database import upgrade; upgrade(sys.argv[1]); print('ok')")
    procs = [subprocess.Popen([sys.executable, "-c", script, pg_database_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(timeout=120), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "")
               for p in procs]
    assert all(code == 0 and out.strip() == "ok" for code, out, _ in results), [r[2][-600:] for r in results]
    assert schema_diff(pg_database_url) == []
    engine = make_engine(pg_database_url)
    try:
        with engine.connect() as conn:
            from sqlalchemy import text

            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        engine.dispose()
