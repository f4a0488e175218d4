"""Schemas of the owner's live inbox (the event stream's ticket)."""

from marshmallow import fields

from backend.schemas.common import BaseSchema


class InboxTicketSchema(BaseSchema):
    ticket = fields.String(metadata={"description": "Single use: `GET .../events?ticket=<ticket>`."})
    expires_at = fields.DateTime()
