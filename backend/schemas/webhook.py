"""Webhook schemas: subscriptions (the secret only in the create/rotate answers) and attempts."""

from flask import current_app
from marshmallow import Schema, ValidationError, fields
from marshmallow.validate import Length, OneOf

from backend.rules.webhooks import EVENT_TYPES, MAX_URL_LENGTH, url_problem
from backend.schemas.common import BaseSchema, page_schema

EVENTS_DESCRIPTION = "A non-empty subset of: " + ", ".join(EVENT_TYPES)


def validate_url(value: str) -> None:
    problem = url_problem(value, current_app.config["WEBHOOK_ALLOW_HTTP"])
    if problem:
        raise ValidationError(problem)


def _url_field(**kwargs) -> fields.String:
    return fields.String(
        validate=[Length(min=1, max=MAX_URL_LENGTH), validate_url],
        metadata={
            "description": "https:// (http:// only when WEBHOOK_ALLOW_HTTP is set)",
            "example": "https://hooks.example.com/in",
        },
        **kwargs,
    )


def _events_field(**kwargs) -> fields.List:
    return fields.List(
        fields.String(validate=OneOf(EVENT_TYPES)),
        validate=Length(min=1, max=len(EVENT_TYPES) * 4),
        metadata={"description": EVENTS_DESCRIPTION, "example": ["message.created", "reply.completed"]},
        **kwargs,
    )


class WebhookUpdateSchema(BaseSchema):
    url = _url_field()
    events = _events_field()
    is_active = fields.Boolean()


class WebhookCreateSchema(WebhookUpdateSchema):
    url = _url_field(required=True)
    events = _events_field(required=True)
    is_active = fields.Boolean(load_default=True)


class WebhookPublicSchema(Schema):
    id = fields.UUID(required=True)
    workspace_id = fields.UUID(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)
    is_active = fields.Boolean(required=True)
    consecutive_failures = fields.Integer(required=True)
    disabled_at = fields.DateTime(allow_none=True)
    disabled_reason = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class WebhookWithSecretSchema(WebhookPublicSchema):
    secret = fields.String(
        required=True,
        metadata={"description": "Signs the deliveries (X-Webhook-Signature); shown only in this answer."},
    )


class WebhookAttemptSchema(Schema):
    id = fields.UUID(required=True)
    delivery_id = fields.UUID(required=True, metadata={"description": "What POST .../redeliver takes"})
    event_id = fields.UUID(required=True)
    event_type = fields.String(required=True)
    attempt = fields.Integer(required=True)
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    duration_ms = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    next_retry_at = fields.DateTime(allow_none=True)
    delivery_status = fields.String(required=True, metadata={"description": "pending, delivered or failed"})


WebhookPageSchema = page_schema(WebhookPublicSchema, "WebhookPage")
WebhookAttemptPageSchema = page_schema(WebhookAttemptSchema, "WebhookAttemptPage")
