"""`closeloop db upgrade`: run the database migrations."""

from __future__ import annotations

import click

from closeloop.cli._common import CliError, Context, pass_ctx, safe_url, unavailable


@click.group("db")
def db() -> None:
    """Manage closeloop's database.

    \b
    Example:
      closeloop db upgrade
    """


@db.command("upgrade")
@pass_ctx
def db_upgrade(obj: Context) -> None:
    """Run the database migrations (to the newest schema).

    \b
    Example:
      CLOSELOOP_DB_URL=postgresql+psycopg://closeloop@db/closeloop closeloop db upgrade
    """
    from closeloop.store.database import upgrade

    config = obj.config()
    try:
        upgrade(config.db_url)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy/Alembic errors: one line
        if isinstance(e, (CliError, click.ClickException)):
            raise
        from closeloop.db_errors import db_reason, unreachable_database

        if unreachable_database(e):
            raise unavailable(f"cannot reach the database {safe_url(config.db_url)}: {db_reason(e)}") from None
        raise CliError(f"migrating {safe_url(config.db_url)} failed: {str(e).splitlines()[0]}") from None
    click.echo(f"database {safe_url(config.db_url)} is at the newest schema")


COMMANDS = [db]
