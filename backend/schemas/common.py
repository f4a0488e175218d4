"""Schemas shared by every resource: the base schema, messages, list pages, query fields."""

from datetime import UTC, datetime

from marshmallow import EXCLUDE, Schema, ValidationError, fields
from marshmallow.validate import Range

# Integer columns are 32-bit: bigger values must be a 422, not a database error.
INT32_MAX = 2**31 - 1


class BaseSchema(Schema):
    """Unknown fields in a request body are ignored (API.md), not rejected."""

    class Meta:
        unknown = EXCLUDE


class MessageSchema(Schema):
    message = fields.String(required=True)


class PageArgsSchema(BaseSchema):
    """`skip`/`limit` of every owner list (limit at most 1000)."""

    skip = fields.Integer(load_default=0, validate=Range(min=0, max=INT32_MAX))
    limit = fields.Integer(load_default=100, validate=Range(min=0, max=1000))


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
