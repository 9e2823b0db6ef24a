"""item recurrences: the done action items a later incident of their kind defeated (the feedback loop: the later
postmortem links to them, their owners are told, the effectiveness review counts them)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 14:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "item_recurrences",
        sa.Column("item_id", sa.String(length=400), nullable=False),
        sa.Column("postmortem_id", sa.String(length=300), nullable=False),
        sa.Column("incident", sa.String(length=240), nullable=False),
        sa.Column("matched", sa.String(length=300), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["action_items.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("item_id", "postmortem_id"),
    )
    with op.batch_alter_table("item_recurrences", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_item_recurrences_postmortem_id"), ["postmortem_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_item_recurrences_found_at"), ["found_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("item_recurrences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_item_recurrences_found_at"))
        batch_op.drop_index(batch_op.f("ix_item_recurrences_postmortem_id"))
    op.drop_table("item_recurrences")
