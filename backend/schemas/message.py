"""Message schemas; `MessagePublicSchema` is shared with the public chat API."""

from datetime import UTC, datetime, timedelta

from marshmallow import Schema, ValidationError, fields, validates
from marshmallow.validate import OneOf

from backend.models.conversation import MESSAGE_ROLES
from backend.schemas.common import BaseSchema, UTCDateTimeArg, page_schema

OWNER_MESSAGE_MAX = 10_000
# Clocks of other channels may run a little ahead of ours.
CLOCK_SKEW = timedelta(minutes=5)


class MessagePublicSchema(Schema):
    id = fields.UUID()
    conversation_id = fields.UUID()
    role = fields.String()
    content = fields.String()
    timestamp = fields.DateTime()
    created_at = fields.DateTime()
    run_id = fields.UUID(allow_none=True)
    meta = fields.Dict()


MessagePageSchema = page_schema(MessagePublicSchema, "MessagePage")


def _content_length(value: str) -> None:
    if not 1 <= len(value.strip()) <= OWNER_MESSAGE_MAX:
        raise ValidationError(f"Must be 1 to {OWNER_MESSAGE_MAX} characters after trimming.")


class OwnerMessageCreateSchema(BaseSchema):
    """A message the owner writes into a conversation; its role is always `owner`."""

    content = fields.String(required=True, validate=_content_length)
    role = fields.String(validate=OneOf(["owner"], error="Owners post messages with role 'owner'."))


class LoggedMessageCreateSchema(BaseSchema):
    """A message of the conversation that the business logs (e.g. from Instagram or WhatsApp)."""

    content = fields.String(required=True, validate=_content_length)
    role = fields.String(
        load_default="owner",
        validate=OneOf(MESSAGE_ROLES),
        metadata={"description": "`user` (the visitor), `assistant` or `owner`; default `owner`"},
    )
    timestamp = UTCDateTimeArg(
        metadata={
            "description": "The message's original time (ISO 8601; no offset means UTC), kept as "
            "given; it must be later than the conversation's latest message (else 409). "
            "Default: now."
        }
    )

    @validates("timestamp")
    def _not_in_the_future(self, value: datetime, **_kwargs) -> None:
        if value > datetime.now(UTC) + CLOCK_SKEW:
            raise ValidationError("Must not be in the future.")
