"""push notifications: the outbox of pushes to the owners' phones

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 11:00:00.000000

One new table (issue #15, "a push to the owner's phone"); nothing existing changes, so
downgrade drops it. A plain CREATE TABLE on both databases (no batch rebuild, see 0003).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from backend.models.types import UTCDateTime

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade():
    op.create_table(
        "push_notifications",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=True),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("done_tokens", JSON, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_push_notifications_user_id", "push_notifications", ["user_id"])
    op.create_index("ix_push_notifications_conversation_id", "push_notifications", ["conversation_id"])
    op.create_index("ix_push_notifications_status_next", "push_notifications", ["status", "next_attempt_at"])


def downgrade():
    op.drop_index("ix_push_notifications_status_next", table_name="push_notifications")
    op.drop_index("ix_push_notifications_conversation_id", table_name="push_notifications")
    op.drop_index("ix_push_notifications_user_id", table_name="push_notifications")
    op.drop_table("push_notifications")
