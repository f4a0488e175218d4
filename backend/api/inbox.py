"""The owner's live inbox: a workspace's events as Server-Sent Events, and the ticket a
browser's EventSource (which cannot send an Authorization header) opens them with."""

from flask import Response, current_app, g, request

from backend import metrics
from backend.api.access import authenticated, me, ticket_or_bearer
from backend.api.parsing import Blueprint
from backend.extensions import db
from backend.schemas.inbox import InboxTicketSchema
from backend.services import inbox, workspaces
from backend.stream_tail import format_event, get_hub, sse_events, stuck_client_guard
from backend.streams import encode, inbox_key

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
    config = current_app.config
    first = None
    if start.resync_reason:
        first = format_event(start.cursor, "resync", encode({"reason": start.resync_reason}))
    key = inbox_key(workspace.id)
    db.session.remove()  # nothing more to look up: give the connection back before streaming
    stream = sse_events(
        get_hub(),
        key,
        start.cursor,
        config["SSE_HEARTBEAT_SECONDS"],
        config["SSE_MAX_SECONDS"],
        first_event=first,
        gauge=metrics.for_app(),
        max_pending=config["SSE_MAX_PENDING_ENTRIES"],
        on_overflow=stuck_client_guard(request.environ, config["SSE_SEND_BUFFER_BYTES"]),
    )
    return Response(
        stream,
        status=200,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
