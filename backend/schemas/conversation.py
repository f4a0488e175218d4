"""Conversation schemas (owner side) and the query arguments of the conversation list."""

from marshmallow import Schema, ValidationError, fields
from marshmallow.validate import Length, OneOf, Range

from backend.models.conversation import CHANNELS, CONVERSATION_STATUSES
from backend.schemas.common import (
    INT32_MAX,
    BaseSchema,
    PageArgsSchema,
    StrictInteger,
    UTCDateTimeArg,
    page_schema,
)

MAX_TAGS = 20
MAX_TAG_LENGTH = 50


class Tags(fields.List):
    """A list of strings, trimmed and de-duplicated (first occurrence wins), blanks dropped.

    Checked here rather than as List(String) so errors stay flat strings
    ({"tags": ["..."]}), never a dict keyed by list index.
    """

    def __init__(self, **kwargs):
        super().__init__(fields.String(), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
            raise ValidationError("Must be a list of strings.")
        tags = list(dict.fromkeys(tag.strip() for tag in value if tag.strip()))
        if any(len(tag) > MAX_TAG_LENGTH for tag in tags):
            raise ValidationError(f"Each tag must be at most {MAX_TAG_LENGTH} characters.")
        if len(tags) > MAX_TAGS:
            raise ValidationError(f"At most {MAX_TAGS} tags.")
        return tags


class ConversationUpdateSchema(BaseSchema):
    visitor_name = fields.String(allow_none=True, validate=Length(max=255))
    visitor_email = fields.Email(allow_none=True, validate=Length(max=255))
    channel = fields.String(validate=OneOf(CHANNELS))
    status = fields.String(validate=OneOf(CONVERSATION_STATUSES))
    tags = Tags()
    human_time_saved_minutes = StrictInteger(validate=Range(min=0, max=INT32_MAX))


class OwnerConversationCreateSchema(ConversationUpdateSchema):
    channel = fields.String(load_default="web", validate=OneOf(CHANNELS))
    status = fields.String(load_default="active", validate=OneOf(CONVERSATION_STATUSES))
    tags = Tags(load_default=list)
    human_time_saved_minutes = StrictInteger(load_default=0, validate=Range(min=0, max=INT32_MAX))


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
    agent_mode = fields.String()
    handoff_requested_at = fields.DateTime(allow_none=True)
    handoff_reason = fields.String(allow_none=True)
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
    # `requested`: conversations where the agent asked for a person and no one released them.
    handoff = fields.String(validate=OneOf(("requested",)))
