"""Scheduling connector schemas (the per-type rules for their `config`: backend/rules/connectors.py)."""

from marshmallow import Schema, ValidationError, fields, validates_schema
from marshmallow.validate import OneOf

from backend.models.workspace import CONNECTOR_TYPES
from backend.rules.connectors import config_problems
from backend.schemas.common import BaseSchema, page_schema


class ConnectorUpdateSchema(BaseSchema):
    type = fields.String(validate=OneOf(CONNECTOR_TYPES))
    config = fields.Dict(keys=fields.String())
    is_active = fields.Boolean()


class ConnectorCreateSchema(ConnectorUpdateSchema):
    type = fields.String(required=True, validate=OneOf(CONNECTOR_TYPES))
    config = fields.Dict(keys=fields.String(), required=True)
    is_active = fields.Boolean(load_default=False)

    @validates_schema
    def check_config(self, data, **kwargs):
        problems = config_problems(data["type"], data["config"])
        if problems:
            raise ValidationError(problems, field_name="config")


class ConnectorPublicSchema(Schema):
    id = fields.UUID()
    workspace_id = fields.UUID()
    type = fields.String()
    config = fields.Dict()
    is_active = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


ConnectorPageSchema = page_schema(ConnectorPublicSchema, "ConnectorPage")
