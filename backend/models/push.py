"""Expo push tokens of the owners' phones (one row per device token)."""

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.types import IdMixin, Model, UTCDateTime, utcnow

PUSH_TOKEN_MAX = 255


class PushToken(IdMixin, Model):
    __tablename__ = "push_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("user.id", ondelete="CASCADE"), index=True)
    # Unique: a phone that logs in as another owner moves its token to that owner.
    token: Mapped[str] = mapped_column(String(PUSH_TOKEN_MAX), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
