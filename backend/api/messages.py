"""Messages (owner side)."""

from flask.views import MethodView

from backend.api.access import authenticated, me
from backend.api.parsing import Blueprint
from backend.schemas.common import MessageSchema, PageArgsSchema
from backend.schemas.message import MessagePageSchema, MessagePublicSchema, OwnerMessageCreateSchema
from backend.services import conversations

URL_PREFIX = "/messages"
blp = Blueprint("messages", __name__, description="Messages (owner side).")


@blp.route("/conversations/<conversation_id>")
class ConversationMessages(MethodView):
    @authenticated
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, MessagePageSchema)
    def get(self, args, conversation_id: str):
        """List a conversation's messages, oldest first."""
        return conversations.message_page(me(), conversation_id, args["skip"], args["limit"])

    @authenticated
    @blp.arguments(OwnerMessageCreateSchema)
    @blp.response(201, MessagePublicSchema)
    def post(self, data, conversation_id: str):
        """Write a message into a conversation as the owner (role `owner`)."""
        conversation = conversations.get_accessible_conversation(me(), conversation_id)
        return conversations.post_owner_message(conversation, data["content"])


@blp.route("/<message_id>")
class MessageItem(MethodView):
    @authenticated
    @blp.response(200, MessagePublicSchema)
    def get(self, message_id: str):
        """Get a message."""
        return conversations.get_accessible_message(me(), message_id)

    @authenticated
    @blp.response(200, MessageSchema)
    def delete(self, message_id: str):
        """Delete a message."""
        conversations.delete_message(conversations.get_accessible_message(me(), message_id))
        return {"message": "Message deleted successfully"}
