"""Public chat for anonymous visitors: profile, conversations, messages, runs, event stream."""

from flask import current_app, g, request

from backend.api.access import visitor
from backend.api.parsing import Blueprint
from backend.api.rate_limits import spend_message_budget
from backend.api.sse import event_stream_response
from backend.extensions import limiter
from backend.schemas.public import (
    ConversationCreatedSchema,
    ConversationCreateSchema,
    MessagePostedSchema,
    MessagesPageSchema,
    MessagesQueryArgs,
    PublicWorkspaceSchema,
    RunSchema,
    VisitorMessageCreateSchema,
)
from backend.services import chat, dispatch, runs
from backend.streams import stream_key

URL_PREFIX = "/public"
blp = Blueprint("public", __name__, description="Public chat for anonymous visitors.")


def _per_ip_limit() -> str:
    return current_app.config["PUBLIC_RATE_LIMIT_PER_IP"]


@blp.route("/workspaces/<string:handle>")
@limiter.limit(_per_ip_limit)
@blp.response(200, PublicWorkspaceSchema)
def get_workspace(handle):
    """A workspace's public profile and active services."""
    return chat.public_profile(handle)


@blp.route("/conversations", methods=["POST"])
@limiter.limit(lambda: current_app.config["PUBLIC_CONVERSATION_RATE_LIMIT_PER_IP"])
@blp.arguments(ConversationCreateSchema)
@blp.response(201, ConversationCreatedSchema)
def create_conversation(body):
    """Start a conversation; the visitor token it returns authorizes every later call."""
    conversation, token = chat.start_conversation(body["workspace_handle"], body.get("visitor_name"))
    return {"conversation_id": conversation.id, "visitor_token": token, "created_at": conversation.created_at}


@blp.route("/conversations/<uuid:conversation_id>/messages", methods=["POST"])
@limiter.limit(_per_ip_limit)
@visitor(lock=True)
@blp.arguments(VisitorMessageCreateSchema)
@blp.response(201, MessagePostedSchema)
@blp.alt_response(200, schema=MessagePostedSchema, description="Replay of an idempotent request")
def post_message(body, conversation_id):
    """Send a visitor message; the agent's reply streams on the conversation's event stream.
    While the owner has taken the conversation over, the message is saved and `run` is null.

    Only accepted messages spend the conversation's message budget: a replay of an
    accepted message (same idempotency key) answers 200 even once the budget is spent."""
    content, key = body["content"], body.get("idempotency_key")
    posted = chat.post_visitor_message(
        g.conversation, content, key, admit=lambda: spend_message_budget(conversation_id)
    )
    cursor = chat.cursor_after_post(conversation_id, posted.run)
    result = {"message": posted.message, "run": posted.run, "stream_cursor": cursor}
    if not posted.created:
        return result, 200
    if posted.run is not None:  # None: the conversation is paused, a person answers
        dispatch.dispatch_run(posted.run.id)  # after the cursor: the worker may publish at once
    return result


@blp.route("/conversations/<uuid:conversation_id>/messages", methods=["GET"])
@limiter.limit(_per_ip_limit)
@visitor
@blp.arguments(MessagesQueryArgs, location="query")
@blp.response(200, MessagesPageSchema)
def list_messages(args, conversation_id):
    """Messages in order, after `since` (exclusive)."""
    return chat.list_messages(conversation_id, args["since"], args["limit"])


@blp.route("/conversations/<uuid:conversation_id>/runs/<uuid:run_id>", methods=["GET"])
@limiter.limit(_per_ip_limit)
@visitor
@blp.response(200, RunSchema)
def get_run(conversation_id, run_id):
    """A run's state."""
    return runs.get_run(conversation_id, run_id)


@blp.route("/conversations/<uuid:conversation_id>/runs/<uuid:run_id>/cancel", methods=["POST"])
@limiter.limit(_per_ip_limit)
@visitor
@blp.response(202, RunSchema)
def cancel_run(conversation_id, run_id):
    """Stop a run; the partial reply is kept."""
    return chat.cancel_run(conversation_id, run_id)


@blp.route("/conversations/<uuid:conversation_id>/stream", methods=["GET"])
@limiter.limit(_per_ip_limit)
@visitor
@blp.response(200, description="Server-Sent Events (text/event-stream)")
def stream(conversation_id):
    """The conversation's events as Server-Sent Events."""
    requested = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    start = chat.stream_start(conversation_id, requested)
    return event_stream_response(stream_key(conversation_id), start.cursor, start.resync_reason)
