"""Agent runs: one per visitor message, producing at most one assistant reply."""

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.types import IdMixin, JSONType, Model, UTCDateTime, utcnow

RUN_STATUSES = ("queued", "running", "completed", "failed", "cancelled")
UNFINISHED_STATUSES = ("queued", "running")
FINISHED_STATUSES = ("completed", "failed", "cancelled")


class AgentRun(IdMixin, Model):
    __tablename__ = "agent_runs"
    __table_args__ = (
        Index("ix_agent_runs_conversation_created", "conversation_id", "created_at"),
        Index("ix_agent_runs_status_heartbeat", "status", "heartbeat_at"),
    )

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    user_message_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("conversation_messages.id", ondelete="CASCADE"), index=True
    )
    reply_message_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("conversation_messages.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), default="queued")
    error: Mapped[dict | None] = mapped_column(JSONType)
    degraded: Mapped[bool] = mapped_column(Boolean, default=False)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # Redis Stream id of the run's first event: where a late SSE joiner starts.
    first_event_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
