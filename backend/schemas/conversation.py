"""Conversation schemas (owner side) and the query arguments of the conversation list."""

from marshmallow import Schema, fields, post_load
from marshmallow.validate import Length, OneOf, Range

from backend.models.conversation import CHANNELS, CONVERSATION_STATUSES
from backend.schemas.common import INT32_MAX, BaseSchema, PageArgsSchema, UTCDateTimeArg, page_schema

MAX_TAGS = 20
MAX_TAG_LENGTH = 50


def _tags(**kwargs) -> fields.List:
    return fields.List(
        fields.String(validate=Length(max=MAX_TAG_LENGTH)),
        validate=Length(max=MAX_TAGS),
        **kwargs,
    )


class ConversationUpdateSchema(BaseSchema):
    visitor_name = fields.String(allow_none=True, validate=Length(max=255))
    visitor_email = fields.Email(allow_none=True, validate=Length(max=255))
    channel = fields.String(validate=OneOf(CHANNELS))
    status = fields.String(validate=OneOf(CONVERSATION_STATUSES))
    tags = _tags()
    human_time_saved_minutes = fields.Integer(validate=Range(min=0, max=INT32_MAX))

    @post_load
    def clean_tags(self, data, **kwargs):
        """Tags are trimmed and de-duplicated (first occurrence wins), blank ones dropped."""
        if "tags" in data:
            seen: dict[str, None] = {}
            for tag in data["tags"]:
                if tag.strip():
                    seen.setdefault(tag.strip(), None)
            data["tags"] = list(seen)
        return data


class OwnerConversationCreateSchema(ConversationUpdateSchema):
    channel = fields.String(load_default="web", validate=OneOf(CHANNELS))
    status = fields.String(load_default="active", validate=OneOf(CONVERSATION_STATUSES))
    tags = _tags(load_default=list)
    human_time_saved_minutes = fields.Integer(load_default=0, validate=Range(min=0, max=INT32_MAX))


class ConversationPublicSchema(Schema):
    id = fields.UUID()
    workspace_id = fields.UUID()
    visitor_name = fields.String(allow_none=True)
    visitor_email = fields.String(allow_none=True)
    channel = fields.String()
    status = fields.String()
    tags = fields.List(fields.String())
    human_time_saved_minutes = fields.Integer()
    last_message_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


ConversationPageSchema = page_schema(ConversationPublicSchema, "ConversationPage")


class ConversationQueryArgsSchema(PageArgsSchema):
    status = fields.String(validate=OneOf(CONVERSATION_STATUSES))
    channel = fields.String(validate=OneOf(CHANNELS))
    tag = fields.String(validate=Length(min=1, max=MAX_TAG_LENGTH))
    # Case-insensitive substring of the visitor's name or email or of any message.
    q = fields.String(validate=Length(min=1, max=200))
    # Conversations with activity at or after this instant: last_message_at >= since,
    # or, when there is no message yet, created_at >= since.
    since = UTCDateTimeArg()
