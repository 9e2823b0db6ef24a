"""`closeloop db upgrade`: run the database migrations; `closeloop db prune`: delete what is past its retention."""

from __future__ import annotations

import click

from closeloop.cli._common import CliError, Context, echo_json, open_store, pass_ctx, safe_url, unavailable


@click.group("db")
def db() -> None:
    """Manage closeloop's database.

    \b
    Examples:
      closeloop db upgrade
      closeloop db prune --dry-run
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


@db.command("prune")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_ctx
def db_prune(obj: Context, dry_run: bool, as_json: bool) -> None:
    """Delete what is past its retention ([retention] in the config), as the daily closeloop-retention
    Schedule does: webhook deliveries, notifications, rate events and, when closed_records is set, closed
    lifecycles with their records. In batches; safe to run while closeloop runs, and again.

    \b
    Example:
      closeloop db prune --dry-run --json
    """
    from datetime import UTC, datetime

    from closeloop.store.retention import Cutoffs

    config = obj.config()
    keep = config.retention
    try:
        store = open_store(obj)
        try:
            result = store.retention.prune(Cutoffs.of(keep, datetime.now(UTC)), batch_size=keep.batch_size,
                                           dry_run=dry_run)
        finally:
            store.close()
    except Exception as e:  # noqa: BLE001 - SQLAlchemy errors: one line
        if isinstance(e, (CliError, click.ClickException)):
            raise
        raise CliError(f"pruning {safe_url(config.db_url)} failed: {str(e).splitlines()[0]}") from None
    if as_json:
        echo_json(result.model_dump(mode="json"))
        return
    verb = "would delete" if dry_run else "deleted"
    rows = ", ".join(f"{n} {table}" for table, n in result.deleted.items() if n) or "nothing"
    closed = f"; {result.lifecycles} closed lifecycle(s)" if result.lifecycles else ""
    click.echo(f"{verb} {rows}{closed} ({safe_url(config.db_url)})")


COMMANDS = [db]
