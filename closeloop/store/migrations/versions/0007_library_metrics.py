"""the library's full-text search and the metrics' columns

postmortems.published_at and .late (published on time?), action_items.recurrences; the search: an FTS5 table on
SQLite (postmortem_fts, filled from the documents already published), an expression GIN index on PostgreSQL.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 11:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FTS_TABLE = "postmortem_fts"  # closeloop.store.insights.FTS_TABLE
PG_SEARCH_INDEX = "ix_postmortems_document_search"  # closeloop.store.insights.PG_SEARCH_INDEX


def upgrade() -> None:
    with op.batch_alter_table("postmortems", schema=None) as batch_op:
        batch_op.add_column(sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index("ix_postmortems_published_at", ["published_at"], unique=False)
    with op.batch_alter_table("postmortems", schema=None) as batch_op:
        batch_op.alter_column("late", server_default=None)
    with op.batch_alter_table("action_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recurrences", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("action_items", schema=None) as batch_op:
        batch_op.alter_column("recurrences", server_default=None)
    # documents published before this revision: their time is unknown, the last change's stands in
    op.execute("UPDATE postmortems SET published_at = updated_at WHERE document_ref IS NOT NULL")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX {PG_SEARCH_INDEX} ON postmortems "
                   "USING gin (to_tsvector('english', coalesce(document_markdown, '')))")
    else:
        op.execute(f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(postmortem_id UNINDEXED, title, body, "
                   "tokenize = 'porter unicode61')")
        op.execute(f"INSERT INTO {FTS_TABLE} (postmortem_id, title, body) "
                   "SELECT p.id, i.title, p.document_markdown FROM postmortems p JOIN incidents i "
                   "ON i.id = p.incident_id WHERE p.document_markdown IS NOT NULL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {PG_SEARCH_INDEX}")
    else:
        op.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")
    with op.batch_alter_table("action_items", schema=None) as batch_op:
        batch_op.drop_column("recurrences")
    with op.batch_alter_table("postmortems", schema=None) as batch_op:
        batch_op.drop_index("ix_postmortems_published_at")
        batch_op.drop_column("late")
        batch_op.drop_column("published_at")
