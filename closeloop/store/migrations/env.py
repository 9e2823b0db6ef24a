"""Alembic environment for closeloop. Run through `closeloop db upgrade` (or Store(url) at start)."""

from alembic import context
from sqlalchemy import engine_from_config, pool, text

from closeloop.store.tables import Base

config = context.config
target_metadata = Base.metadata
# PostgreSQL: several processes (pods, a migration Job and new workers) may upgrade at once. Each takes this
# transaction-scoped advisory lock first, so one migrates while the others wait, then find the schema current.
MIGRATION_LOCK = 0x636C6F73656C6F6F  # "closeloo"


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        connectable = engine_from_config(config.get_section(config.config_ini_section, {}),
                                         prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
