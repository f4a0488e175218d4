"""Message activity per conversation and 15-minute UTC bucket, for workspace analytics.

On PostgreSQL a row trigger on conversation_messages keeps these counters (see
the initial migration), so analytics reads a few thousand small rows instead of
every message of the window. 15 minutes divides every current UTC offset, so a
bucket never straddles a local midnight. SQLite has no such trigger and leaves
the table empty: analytics counts the messages themselves there.
"""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.types import Model, UTCDateTime

BUCKET_SECONDS = 15 * 60


class MessageActivity(Model):
    __tablename__ = "message_activity"
    __table_args__ = (Index("ix_message_activity_workspace_bucket", "workspace_id", "bucket"),)

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    bucket: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    # Copied from the conversation (which never changes workspace); no foreign key,
    # so counting a message takes no lock on the workspace row.
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    visitor_messages: Mapped[int] = mapped_column(Integer, default=0)
    assistant_replies: Mapped[int] = mapped_column(Integer, default=0)
    degraded_replies: Mapped[int] = mapped_column(Integer, default=0)
    tokens_used: Mapped[int] = mapped_column(BigInteger, default=0)
