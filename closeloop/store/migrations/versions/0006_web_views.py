"""web views: the web app's audit log, the draft editor's autosaves, used action links, and the indexes the
dashboard's queries use (stalled postmortems, overdue and done items, everyone's or some owners'; the action
items' ones cover the columns the counts group and join by, and replace the single-column status and owner
indexes)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("person", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=400), nullable=False),
        sa.Column("via", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=500), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("web_audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_audit_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_audit_target"), ["target"], unique=False)
    op.create_table(
        "draft_autosaves",
        sa.Column("postmortem_id", sa.String(length=300), nullable=False),
        sa.Column("person", sa.String(length=200), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("postmortem_id", "person"),
    )
    op.create_table(
        "action_link_uses",
        sa.Column("token_id", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_id"),
    )
    with op.batch_alter_table("action_link_uses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_action_link_uses_expires_at"), ["expires_at"], unique=False)
    with op.batch_alter_table("postmortems", schema=None) as batch_op:
        batch_op.create_index("ix_postmortems_stage_stage_due_at", ["stage", "stage_due_at"], unique=False)
        batch_op.create_index("ix_postmortems_owner_stage", ["owner", "stage"], unique=False)
    with op.batch_alter_table("action_items", schema=None) as batch_op:
        batch_op.create_index("ix_action_items_status_due_at", ["status", "due_at", "owner", "postmortem_id"],
                              unique=False)
        batch_op.create_index("ix_action_items_owner_status_due_at", ["owner", "status", "due_at", "postmortem_id"],
                              unique=False)
        batch_op.create_index("ix_action_items_status_owner_verdict", ["status", "owner", "verdict", "postmortem_id"],
                              unique=False)
        batch_op.drop_index(batch_op.f("ix_action_items_status"))  # prefixes of the new ones
        batch_op.drop_index(batch_op.f("ix_action_items_owner"))


def downgrade() -> None:
    with op.batch_alter_table("action_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_action_items_owner"), ["owner"], unique=False)
        batch_op.create_index(batch_op.f("ix_action_items_status"), ["status"], unique=False)
        batch_op.drop_index("ix_action_items_status_owner_verdict")
        batch_op.drop_index("ix_action_items_owner_status_due_at")
        batch_op.drop_index("ix_action_items_status_due_at")
    with op.batch_alter_table("postmortems", schema=None) as batch_op:
        batch_op.drop_index("ix_postmortems_owner_stage")
        batch_op.drop_index("ix_postmortems_stage_stage_due_at")
    with op.batch_alter_table("action_link_uses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_action_link_uses_expires_at"))
    op.drop_table("action_link_uses")
    op.drop_table("draft_autosaves")
    with op.batch_alter_table("web_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_audit_target"))
        batch_op.drop_index(batch_op.f("ix_web_audit_at"))
    op.drop_table("web_audit")
