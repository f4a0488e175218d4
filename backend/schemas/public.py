"""Schemas of the public chat API (anonymous visitors)."""

from marshmallow import ValidationError, fields, validate

from backend.schemas.common import BaseSchema, StrictInteger, UTCDateTimeArg
from backend.schemas.message import MessagePublicSchema
from backend.schemas.service import ServicePublicSchema

MAX_CONTENT_CHARS = 4000


class VisitorServiceSchema(ServicePublicSchema):
    """What visitors see of a service: its public facts, not its ordering or state."""

    class Meta:
        fields = ("id", "name", "description", "format", "duration_minutes", "starting_price", "currency")


class PublicWorkspaceSchema(BaseSchema):
    handle = fields.String()
    public_name = fields.String(allow_none=True)
    subtitle = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    profile_image_url = fields.String(allow_none=True)
    services = fields.List(fields.Nested(VisitorServiceSchema))


class ConversationCreateSchema(BaseSchema):
    workspace_handle = fields.String(required=True, validate=validate.Length(min=1, max=63))
    visitor_name = fields.String(allow_none=True, validate=validate.Length(max=255))


class ConversationCreatedSchema(BaseSchema):
    conversation_id = fields.UUID()
    visitor_token = fields.String()
    created_at = fields.DateTime()


def _trimmed_length(value: str) -> None:
    if not 1 <= len(value.strip()) <= MAX_CONTENT_CHARS:
        raise ValidationError(f"Must be 1 to {MAX_CONTENT_CHARS} characters after trimming.")


class VisitorMessageCreateSchema(BaseSchema):
    content = fields.String(required=True, validate=_trimmed_length)
    idempotency_key = fields.String(allow_none=True, validate=validate.Length(min=1, max=255))
    role = fields.String(load_default="user", validate=validate.OneOf(["user"]))


class RunSchema(BaseSchema):
    id = fields.UUID()
    conversation_id = fields.UUID()
    user_message_id = fields.UUID()
    status = fields.String()
    reply_message_id = fields.UUID(allow_none=True)
    error = fields.Dict(allow_none=True)
    degraded = fields.Boolean()
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class MessagePostedSchema(BaseSchema):
    message = fields.Nested(MessagePublicSchema)
    run = fields.Nested(RunSchema, allow_none=True)
    stream_cursor = fields.String(allow_none=True)


class MessagesQueryArgs(BaseSchema):
    since = UTCDateTimeArg(load_default=None)
    limit = StrictInteger(load_default=50, validate=validate.Range(min=1, max=200))


class MessagesPageSchema(BaseSchema):
    messages = fields.List(fields.Nested(MessagePublicSchema))
    next_since = fields.DateTime(allow_none=True)
    agent_mode = fields.String()
