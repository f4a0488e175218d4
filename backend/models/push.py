"""Expo push tokens of the owners' phones (one row per device token), and the outbox of push
notifications to them (one row per notification to one owner, sent to all their tokens)."""

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.types import IdMixin, JSONType, Model, UTCDateTime, utcnow

PUSH_TOKEN_MAX = 255
NOTIFICATION_STATUSES = ("pending", "sent", "failed")


class PushToken(IdMixin, Model):
    __tablename__ = "push_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("user.id", ondelete="CASCADE"), index=True)
    # Unique: a phone that logs in as another owner moves its token to that owner.
    token: Mapped[str] = mapped_column(String(PUSH_TOKEN_MAX), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PushNotification(IdMixin, Model):
    """The outbox: written in the transaction of the change that causes it (a handoff
    request, a new conversation), sent by a worker: pending until Expo took it for every
    token (sent), or the attempts ran out (failed)."""

    __tablename__ = "push_notifications"
    __table_args__ = (Index("ix_push_notifications_status_next", "status", "next_attempt_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("user.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("workspaces.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the next attempt is due; while an attempt is in flight, when its lease ends.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Tokens already done with (Expo took the message, or refused it for good): not sent again.
    done_tokens: Mapped[list] = mapped_column(JSONType, default=list)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
