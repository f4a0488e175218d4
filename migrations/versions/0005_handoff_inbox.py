"""handoff and inbox: agent mode and handoff request on conversations, the workspace's
handoff mode and push opt-in, the owners' Expo push tokens

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:30:00.000000

New columns have server defaults, so existing rows read as before (agent `auto`, handoff
`notify`, no push for new conversations); downgrade drops them and the new table.
"""

import sqlalchemy as sa
from alembic import op

from backend.models.types import UTCDateTime

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ALTER TABLE ... ADD/DROP COLUMN on both databases: a SQLite batch rebuild of
    # "workspaces" would delete every service, connector and conversation through ON
    # DELETE CASCADE (see 0003).
    op.add_column(
        "conversations", sa.Column("agent_mode", sa.String(length=10), server_default="auto", nullable=False)
    )
    op.add_column("conversations", sa.Column("handoff_requested_at", UTCDateTime(timezone=True), nullable=True))
    op.add_column("conversations", sa.Column("handoff_reason", sa.String(length=500), nullable=True))
    op.create_index(
        "ix_conversations_workspace_handoff", "conversations", ["workspace_id", "handoff_requested_at"]
    )
    op.add_column(
        "workspaces", sa.Column("handoff_mode", sa.String(length=10), server_default="notify", nullable=False)
    )
    op.add_column(
        "workspaces",
        sa.Column("push_on_new_conversation", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_table(
        "push_tokens",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token"),
    )
    op.create_index("ix_push_tokens_user_id", "push_tokens", ["user_id"])


def downgrade():
    op.drop_index("ix_push_tokens_user_id", table_name="push_tokens")
    op.drop_table("push_tokens")
    op.drop_column("workspaces", "push_on_new_conversation")
    op.drop_column("workspaces", "handoff_mode")
    op.drop_index("ix_conversations_workspace_handoff", table_name="conversations")
    op.drop_column("conversations", "handoff_reason")
    op.drop_column("conversations", "handoff_requested_at")
    op.drop_column("conversations", "agent_mode")
