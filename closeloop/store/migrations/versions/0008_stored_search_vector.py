"""the library's search reads a stored tsvector on PostgreSQL

Migration 0007's expression index (`to_tsvector('english', coalesce(document_markdown, ''))`) finds the matching
documents, but ranking them (ts_rank) and checking a phrase ("connection pool") need each match's tsvector,
which PostgreSQL then computes again from the Markdown for every matching row: about half a millisecond per
3 KB document, seconds for a common word at 10,000 postmortems (bench/library.py). The vector is now a stored
generated column, `postmortems.document_search`, with the GIN index (same name) on it. PostgreSQL only; on
SQLite (FTS5) nothing changes. Not in the SQLAlchemy tables: the database keeps it (closeloop/store/insights.py
reads it on PostgreSQL only).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 12:00:00
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PG_SEARCH_INDEX = "ix_postmortems_document_search"  # closeloop.store.insights.PG_SEARCH_INDEX
PG_SEARCH_COLUMN = "document_search"  # closeloop.store.insights.PG_SEARCH_COLUMN
VECTOR = "to_tsvector('english', coalesce(document_markdown, ''))"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP INDEX IF EXISTS {PG_SEARCH_INDEX}")
    op.execute(f"ALTER TABLE postmortems ADD COLUMN {PG_SEARCH_COLUMN} tsvector "
               f"GENERATED ALWAYS AS ({VECTOR}) STORED")
    op.execute(f"CREATE INDEX {PG_SEARCH_INDEX} ON postmortems USING gin ({PG_SEARCH_COLUMN})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP INDEX IF EXISTS {PG_SEARCH_INDEX}")
    op.execute(f"ALTER TABLE postmortems DROP COLUMN IF EXISTS {PG_SEARCH_COLUMN}")
    op.execute(f"CREATE INDEX {PG_SEARCH_INDEX} ON postmortems USING gin ({VECTOR})")
