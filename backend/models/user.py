"""Users: owners of workspaces and superusers."""

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, validates

from backend.models.types import IdMixin, JSONType, Model, TimestampMixin
from backend.rules.identity import normalize_email


class User(IdMixin, TimestampMixin, Model):
    __tablename__ = "user"

    # Always the normalised address (backend/rules/identity.py), whichever path writes it,
    # so the unique index allows one account per address however it is typed.
    email: Mapped[str] = mapped_column(String(255), unique=True, index=True)
    hashed_password: Mapped[str] = mapped_column(String(255))
    # Raised by every password change or reset: access and reset tokens carry the
    # version they were issued under, and an older one is refused.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    full_name: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    business_name: Mapped[str | None] = mapped_column(String(255))
    tagline: Mapped[str | None] = mapped_column(String(255))
    bio: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(64))
    website: Mapped[str | None] = mapped_column(String(2048))
    social_links: Mapped[dict] = mapped_column(JSONType, default=dict)
    setup_completed: Mapped[bool] = mapped_column(Boolean, default=False)
    # The setup wizard's profile. `about` and `faqs` are business knowledge: the agent's
    # prompt carries them next to the workspace's knowledge base (backend/agent/prompt.py).
    name: Mapped[str | None] = mapped_column(String(255))
    about: Mapped[str | None] = mapped_column(Text)
    avatar_url: Mapped[str | None] = mapped_column(String(2048))
    profile_type: Mapped[str | None] = mapped_column(String(50))
    faqs: Mapped[str | None] = mapped_column(Text)

    @validates("email")
    def _normalise_email(self, _key: str, value: str) -> str:
        return normalize_email(value) if value is not None else value
