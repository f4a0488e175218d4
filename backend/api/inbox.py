"""The owner's live inbox: a workspace's events as Server-Sent Events, and the ticket a
browser's EventSource (which cannot send an Authorization header) opens them with."""

from flask import g, request

from backend.api.access import authenticated, me, ticket_or_bearer
from backend.api.parsing import Blueprint
from backend.api.sse import event_stream_response
from backend.schemas.inbox import InboxTicketSchema
from backend.services import inbox, workspaces
from backend.streams import inbox_key

URL_PREFIX = "/workspaces"
blp = Blueprint("inbox", __name__, description="The owner's live inbox (Server-Sent Events).")


@blp.route("/<workspace_id>/events/ticket", methods=["POST"])
@authenticated
@blp.response(201, InboxTicketSchema)
def create_ticket(workspace_id: str):
    """A single-use ticket, valid INBOX_TICKET_SECONDS (60), to open the inbox's event stream."""
    workspace = workspaces.get_accessible_workspace(me(), workspace_id)
    return inbox.issue_ticket(me(), workspace)


@blp.route("/<workspace_id>/events", methods=["GET"])
@ticket_or_bearer
@blp.response(200, description="Server-Sent Events (text/event-stream)")
def events(workspace_id: str):
    """The workspace's live events (new conversations and messages, runs, handoffs, changes)."""
    workspace = workspaces.get_accessible_workspace(g.inbox_user, workspace_id)
    requested = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    start = inbox.stream_start(workspace.id, requested)
    return event_stream_response(inbox_key(workspace.id), start.cursor, start.resync_reason)
