"""Conversations between a visitor and a workspace, and their messages."""

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.types import IdMixin, JSONType, Model, TimestampMixin, UTCDateTime, utcnow
from backend.rules.handoff import HANDOFF_REASON_MAX

CHANNELS = ("web", "web_public", "instagram", "whatsapp", "sms", "messenger", "chatgpt", "phone")
CONVERSATION_STATUSES = ("active", "closed", "archived", "completed")
MESSAGE_ROLES = ("user", "assistant", "owner")
# `auto`: the agent answers visitor messages; `paused`: a person from the business has
# taken over, visitor messages are saved but start no run.
AGENT_MODES = ("auto", "paused")


class Conversation(IdMixin, TimestampMixin, Model):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_workspace_last_message", "workspace_id", "last_message_at"),
        Index("ix_conversations_workspace_status", "workspace_id", "status"),
        Index("ix_conversations_workspace_channel", "workspace_id", "channel"),
        Index("ix_conversations_workspace_created", "workspace_id", "created_at"),
        Index("ix_conversations_workspace_handoff", "workspace_id", "handoff_requested_at"),
        # PostgreSQL-only search indexes (owner list filters `tag` and `q`); on SQLite,
        # which can use neither, they are empty partial indexes (WHERE 0) that only keep
        # the migration and the models in agreement.
        Index(
            "ix_conversations_tags",
            "tags",
            postgresql_using="gin",
            postgresql_ops={"tags": "jsonb_path_ops"},
            sqlite_where=text("0"),
        ),
        Index(
            "ix_conversations_visitor_trgm",
            "visitor_name",
            "visitor_email",
            postgresql_using="gin",
            postgresql_ops={"visitor_name": "gin_trgm_ops", "visitor_email": "gin_trgm_ops"},
            sqlite_where=text("0"),
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("workspaces.id", ondelete="CASCADE"))
    visitor_name: Mapped[str | None] = mapped_column(String(255))
    visitor_email: Mapped[str | None] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(20), default="web")
    status: Mapped[str] = mapped_column(String(20), default="active")
    tags: Mapped[list] = mapped_column(JSONType, default=list)
    human_time_saved_minutes: Mapped[int] = mapped_column(Integer, default=0)
    # sha256 of the visitor token: the token itself is shown once, never stored.
    visitor_token_hash: Mapped[str | None] = mapped_column(String(64))
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    agent_mode: Mapped[str] = mapped_column(String(10), default="auto", server_default="auto")
    # Set when the agent asked for a person (tool `request_human`); cleared on release.
    handoff_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handoff_reason: Mapped[str | None] = mapped_column(String(HANDOFF_REASON_MAX))


class ConversationMessage(IdMixin, Model):
    __tablename__ = "conversation_messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "idempotency_key", name="uq_messages_idempotency_key"),
        Index("ix_conversation_messages_conversation_timestamp", "conversation_id", "timestamp"),
        # The owner's `q` search (ILIKE '%term%') on PostgreSQL; empty on SQLite (as above).
        Index(
            "ix_conversation_messages_content_trgm",
            "content",
            postgresql_using="gin",
            postgresql_ops={"content": "gin_trgm_ops"},
            sqlite_where=text("0"),
        ),
    )

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)
    # Strictly increasing within a conversation, so `since` paging never skips a tie.
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The run whose reply this is; unique, so a run can never save two replies.
    # No foreign key: agent_runs already references messages, and a cycle would
    # make the schema impossible to create on SQLite.
    run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    meta: Mapped[dict] = mapped_column(JSONType, default=dict)
