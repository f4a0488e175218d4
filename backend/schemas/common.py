"""Schemas shared by every resource: the base schema, messages and list pages."""

from marshmallow import EXCLUDE, Schema, fields
from marshmallow.validate import Range


class BaseSchema(Schema):
    """Unknown fields in a request body are ignored (API.md), not rejected."""

    class Meta:
        unknown = EXCLUDE


class MessageSchema(Schema):
    message = fields.String(required=True)


class PageArgsSchema(BaseSchema):
    """`skip`/`limit` of every owner list (limit at most 1000)."""

    skip = fields.Integer(load_default=0, validate=Range(min=0))
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
