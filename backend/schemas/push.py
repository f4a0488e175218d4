"""Push token schemas: the token a phone registers, and the registered row."""

from marshmallow import Schema, ValidationError, fields

from backend.rules.push import TOKEN_DESCRIPTION, is_push_token
from backend.schemas.common import BaseSchema


def validate_token(value: str) -> None:
    if not is_push_token(value):
        raise ValidationError("Not an Expo push token (ExponentPushToken[...] or ExpoPushToken[...]).")


class PushTokenCreateSchema(BaseSchema):
    token = fields.String(
        required=True,
        validate=validate_token,
        metadata={"description": TOKEN_DESCRIPTION, "example": "ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]"},
    )


class PushTokenPublicSchema(Schema):
    token = fields.String(required=True)
    created_at = fields.DateTime(required=True)
