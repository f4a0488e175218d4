"""Conversations (owner side)."""

from flask.views import MethodView

from backend.api.access import authenticated, me
from backend.api.messages import ConversationMessages
from backend.api.parsing import Blueprint
from backend.schemas.common import MessageSchema
from backend.schemas.conversation import (
    ConversationPageSchema,
    ConversationPublicSchema,
    ConversationQueryArgsSchema,
    ConversationUpdateSchema,
    OwnerConversationCreateSchema,
)
from backend.schemas.message import LoggedMessageCreateSchema, MessagePublicSchema
from backend.services import conversations, handoff
from backend.services.workspaces import get_accessible_workspace

URL_PREFIX = "/conversations"
blp = Blueprint("conversations", __name__, description="Conversations (owner side).")


@blp.route("/workspaces/<workspace_id>")
class WorkspaceConversations(MethodView):
    @authenticated
    @blp.arguments(ConversationQueryArgsSchema, location="query")
    @blp.response(200, ConversationPageSchema)
    def get(self, args, workspace_id: str):
        """List a workspace's conversations, most recent activity first."""
        workspace = get_accessible_workspace(me(), workspace_id)
        items, count = conversations.list_conversations(workspace, args)
        return {"data": items, "count": count}

    @authenticated
    @blp.arguments(OwnerConversationCreateSchema)
    @blp.response(201, ConversationPublicSchema)
    def post(self, data, workspace_id: str):
        """Start a conversation (owner side: no visitor token)."""
        workspace = get_accessible_workspace(me(), workspace_id)
        return conversations.create_conversation(workspace, data)


@blp.route("/<conversation_id>")
class ConversationItem(MethodView):
    @authenticated
    @blp.response(200, ConversationPublicSchema)
    def get(self, conversation_id: str):
        """Get a conversation."""
        return conversations.get_accessible_conversation(me(), conversation_id)

    @authenticated
    @blp.arguments(ConversationUpdateSchema)
    @blp.response(200, ConversationPublicSchema)
    def patch(self, data, conversation_id: str):
        """Update a conversation (status, tags, visitor details...)."""
        conversation = conversations.get_accessible_conversation(me(), conversation_id)
        return conversations.update_conversation(conversation, data)

    @authenticated
    @blp.response(200, MessageSchema)
    def delete(self, conversation_id: str):
        """Delete a conversation with its messages and runs."""
        conversations.delete_conversation(conversations.get_accessible_conversation(me(), conversation_id))
        return {"message": "Conversation deleted successfully"}


@blp.route("/<conversation_id>/takeover", methods=["POST"])
@authenticated
@blp.response(200, ConversationPublicSchema)
def take_over(conversation_id: str):
    """Take the conversation over from the agent (`agent_mode` becomes `paused`).

    A run in flight is cancelled, its partial reply kept; visitor messages are still saved
    but start no run until the conversation is released. The visitor's stream gets event
    `agent_mode`. Taking over a paused conversation changes nothing."""
    conversation = conversations.get_accessible_conversation(me(), conversation_id)
    return handoff.take_over(conversation.id)


@blp.route("/<conversation_id>/release", methods=["POST"])
@authenticated
@blp.response(200, ConversationPublicSchema)
def release(conversation_id: str):
    """Hand the conversation back to the agent (`agent_mode` becomes `auto`) and close a
    pending handoff request; the next visitor message starts a run, whose history holds
    what the owner wrote."""
    conversation = conversations.get_accessible_conversation(me(), conversation_id)
    return handoff.release(conversation.id)


@blp.route("/<conversation_id>/messages")
class ConversationMessageLog(ConversationMessages):
    """GET lists the messages as GET /messages/conversations/{id} does; POST logs any role."""

    @authenticated
    @blp.arguments(LoggedMessageCreateSchema)
    @blp.response(201, MessagePublicSchema)
    def post(self, data, conversation_id: str):
        """Log a message of the conversation (any channel): role `user`, `assistant` or `owner`,
        optionally with its original `timestamp`. No agent run is started.

        Imported history goes oldest first: a `timestamp` that is not later than the
        conversation's latest message is a 409 (messages keep one strict order)."""
        conversation = conversations.get_accessible_conversation(me(), conversation_id)
        return conversations.log_message(conversation, data["role"], data["content"], data.get("timestamp"))
