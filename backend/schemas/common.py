"""Schemas shared by every resource: the base schema, messages, list pages, query fields."""

import re
from datetime import UTC, datetime

from marshmallow import EXCLUDE, Schema, ValidationError, fields
from marshmallow.validate import Range

# Integer columns are 32-bit: bigger values must be a 422, not a database error.
INT32_MAX = 2**31 - 1
# Python's int() and Decimal() also read "١٢" (Arabic-Indic digits), "1_000" and " 7 ".
ASCII_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
ASCII_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,40}(?:\.[0-9]{0,40})?|\.[0-9]{1,40})")


class StrictInteger(fields.Integer):
    """A JSON integer, or ASCII digits in a query string. A float is refused, not
    truncated (1.5 is no duration), and so are booleans and other scripts' digits."""

    def _validated(self, value):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self.make_error("invalid", input=value)
        if isinstance(value, str) and not ASCII_INTEGER.fullmatch(value):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class StrictDecimal(fields.Decimal):
    """A decimal read exactly from a JSON number's text or a plain ASCII decimal string."""

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        if isinstance(value, str) and not ASCII_DECIMAL.fullmatch(value):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class BaseSchema(Schema):
    """Unknown fields in a request body are ignored (API.md), not rejected."""

    class Meta:
        unknown = EXCLUDE


class MessageSchema(Schema):
    message = fields.String(required=True)


class PageArgsSchema(BaseSchema):
    """`skip`/`limit` of every owner list (limit at most 1000)."""

    skip = StrictInteger(load_default=0, validate=Range(min=0, max=INT32_MAX))
    limit = StrictInteger(load_default=100, validate=Range(min=0, max=1000))


def page_schema(item_schema: type[Schema], name: str) -> type[Schema]:
    """A `{"data": [...], "count": n}` schema for a list of `item_schema` (named for OpenAPI)."""
    return type(
        name,
        (Schema,),
        {
            "data": fields.List(fields.Nested(item_schema), required=True),
            "count": fields.Integer(required=True),
        },
    )


class UTCDateTimeArg(fields.DateTime):
    """An ISO 8601 timestamp (query string), returned timezone-aware in UTC.

    A naive value is taken as UTC, and a `+` offset that arrived unencoded (as a
    space) is repaired, because `?since=2026-01-01T00:00:00+00:00` is what people type.
    """

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid", input=value, obj_type="datetime")
        text = value.strip()
        if " " in text and "T" in text:
            text = text.replace(" ", "+")
        try:
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
        # An offset can carry a date past year 9999 or before year 1 (OverflowError).
        except (ValueError, OverflowError) as exc:
            raise self.make_error("invalid", input=value, obj_type="datetime") from exc


def not_blank(value: str | None) -> None:
    """Rejects strings that are empty once trimmed (a name made of spaces is no name)."""
    if value is not None and not value.strip():
        raise ValidationError("Must not be blank.")


def upload_schema(field: str, description: str) -> type[Schema]:
    """A multipart/form-data body carrying one required file part named `field`."""
    from flask_smorest.fields import Upload

    return type(
        f"{field.capitalize()}UploadSchema",
        (BaseSchema,),
        {field: Upload(required=True, metadata={"description": description})},
    )
