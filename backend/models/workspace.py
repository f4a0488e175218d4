"""A business's workspace with its services and scheduling connectors."""

import uuid
from decimal import Decimal

from sqlalchemy import Boolean, ForeignKey, Index, Integer, Numeric, String, Text, Uuid, false, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.models.types import IdMixin, JSONType, Model, TimestampMixin
from backend.rules.tones import DEFAULT_TONE

# Known values; `type` and `tone` are free text of 1..FREE_TEXT_MAX characters. A tone
# outside backend/rules/tones.py's TONES is the owner's own description of the voice.
WORKSPACE_TYPES = ("individual", "business")
FREE_TEXT_MAX = 50
CONNECTOR_TYPES = ("calendly", "square", "agendapro")
# What the agent asking for a person does: `notify` the owner and keep answering, or
# also `pause` the conversation at once.
HANDOFF_MODES = ("notify", "pause")


class Workspace(IdMixin, TimestampMixin, Model):
    __tablename__ = "workspaces"

    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("user.id", ondelete="CASCADE"), unique=True)
    handle: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(FREE_TEXT_MAX), default="individual")
    tone: Mapped[str] = mapped_column(String(FREE_TEXT_MAX), default=DEFAULT_TONE)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    knowledge_base: Mapped[str | None] = mapped_column(Text)
    public_name: Mapped[str | None] = mapped_column(String(255))
    subtitle: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    profile_image_url: Mapped[str | None] = mapped_column(String(2048))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    handoff_mode: Mapped[str] = mapped_column(String(10), default="notify", server_default="notify")
    # The owner's phone gets a push for every new conversation, not only for handoffs.
    push_on_new_conversation: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    owner = relationship("User", lazy="joined")


class WorkspaceService(IdMixin, TimestampMixin, Model):
    __tablename__ = "workspace_services"
    __table_args__ = (Index("ix_workspace_services_order", "workspace_id", "sort_order", "name"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    format: Mapped[str | None] = mapped_column(String(64))
    duration_minutes: Mapped[int | None] = mapped_column(Integer)
    starting_price: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)


class SchedulingConnector(IdMixin, TimestampMixin, Model):
    __tablename__ = "scheduling_connectors"
    # At most one active connector per workspace, enforced by the database itself.
    __table_args__ = (
        Index(
            "uq_scheduling_connectors_one_active",
            "workspace_id",
            unique=True,
            postgresql_where=text("is_active"),
            sqlite_where=text("is_active"),
        ),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(20))
    config: Mapped[dict] = mapped_column(JSONType, default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
