"""action items remember the newest ticket status event applied (the vendor's time and the status), so a
stale one replayed under a new delivery id is ignored

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("action_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ticket_event_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("ticket_event_status", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("action_items", schema=None) as batch_op:
        batch_op.drop_column("ticket_event_status")
        batch_op.drop_column("ticket_event_at")
