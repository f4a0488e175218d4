"""Message schemas; `MessagePublicSchema` is shared with the public chat API."""

from marshmallow import Schema, ValidationError, fields, validates
from marshmallow.validate import OneOf

from backend.schemas.common import BaseSchema, page_schema

OWNER_MESSAGE_MAX = 10_000


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


class OwnerMessageCreateSchema(BaseSchema):
    """A message the owner writes into a conversation; its role is always `owner`."""

    content = fields.String(required=True)
    role = fields.String(validate=OneOf(["owner"], error="Owners post messages with role 'owner'."))

    @validates("content")
    def check_content(self, value: str, **kwargs) -> None:
        if not 1 <= len(value.strip()) <= OWNER_MESSAGE_MAX:
            raise ValidationError(f"Must be 1 to {OWNER_MESSAGE_MAX} characters after trimming.")
