"""Workspace schemas, and the time-zone rule they validate (handles: backend/rules/handles.py)."""

import zoneinfo
from functools import lru_cache

from marshmallow import Schema, ValidationError, fields
from marshmallow.validate import Length, OneOf, Range

from backend.models.workspace import FREE_TEXT_MAX, HANDOFF_MODES
from backend.rules.handles import handle_problem
from backend.schemas.common import BaseSchema, StrictInteger, not_blank, page_schema
from backend.schemas.user import visitor_link


def validate_handle(value: str) -> None:
    problem = handle_problem(value)
    if problem:
        raise ValidationError(problem)


@lru_cache(maxsize=1)
def iana_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(value: str) -> None:
    if value not in iana_timezones():
        raise ValidationError("Not a known IANA time zone (e.g. 'Europe/Madrid', 'UTC').")


def _url(**kwargs) -> fields.Url:
    # Shown to visitors (the public profile): the same rules as every visitor-facing link.
    return fields.Url(schemes={"http", "https"}, validate=[Length(max=2048), visitor_link], **kwargs)


class WorkspaceUpdateSchema(BaseSchema):
    handle = fields.String(validate=validate_handle)
    name = fields.String(validate=[Length(min=1, max=255), not_blank])
    # Free text: "individual" / "business" or anything else; the five known tones
    # (professional, friendly, casual, formal, playful) have tuned instructions, any other
    # text is the owner's own description of the voice.
    type = fields.String(validate=[Length(min=1, max=FREE_TEXT_MAX), not_blank])
    tone = fields.String(validate=[Length(min=1, max=FREE_TEXT_MAX), not_blank])
    timezone = fields.String(validate=validate_timezone)
    # No length cap of its own: the 1 MiB request limit bounds it.
    knowledge_base = fields.String(allow_none=True)
    public_name = fields.String(allow_none=True, validate=Length(max=255))
    subtitle = fields.String(allow_none=True, validate=Length(max=255))
    description = fields.String(allow_none=True)
    profile_image_url = _url(allow_none=True)
    is_active = fields.Boolean()
    handoff_mode = fields.String(validate=OneOf(HANDOFF_MODES))
    push_on_new_conversation = fields.Boolean()


class WorkspaceCreateSchema(WorkspaceUpdateSchema):
    """Every field is optional: a missing handle is derived from the owner's email."""


class WorkspacePublicSchema(Schema):
    id = fields.UUID()
    owner_id = fields.UUID()
    handle = fields.String()
    name = fields.String()
    type = fields.String()
    tone = fields.String()
    timezone = fields.String()
    knowledge_base = fields.String(allow_none=True)
    public_name = fields.String(allow_none=True)
    subtitle = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    profile_image_url = fields.String(allow_none=True)
    is_active = fields.Boolean()
    handoff_mode = fields.String()
    push_on_new_conversation = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


WorkspacePageSchema = page_schema(WorkspacePublicSchema, "WorkspacePage")


class AnalyticsArgsSchema(BaseSchema):
    days = StrictInteger(load_default=30, validate=Range(min=1, max=365))


class AnalyticsCountsSchema(Schema):
    conversations = fields.Integer()
    visitor_messages = fields.Integer()
    assistant_replies = fields.Integer()
    degraded_replies = fields.Integer()
    human_time_saved_minutes = fields.Integer()
    tokens_used = fields.Integer()


class AnalyticsDaySchema(AnalyticsCountsSchema):
    date = fields.Date()


class AnalyticsSchema(Schema):
    workspace_id = fields.UUID()
    timezone = fields.String()
    days = fields.Integer()
    start_date = fields.Date()
    end_date = fields.Date()
    totals = fields.Nested(AnalyticsCountsSchema)
    series = fields.List(fields.Nested(AnalyticsDaySchema))
