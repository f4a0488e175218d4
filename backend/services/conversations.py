"""Conversations and messages, owner side: filtered lists, CRUD, owner-written messages.

Lists are ordered by last_message_at (newest first, conversations without
messages last), then created_at, then id, so paging is stable; the `q` search
and its two plans are in services.conversation_search. Owner messages
go through services.messages, the one place that orders a conversation's
messages and keeps its last_message_at.
"""

import uuid
from datetime import datetime

from sqlalchemy import and_, exists, func, literal, or_, select, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB

from backend.errors import not_found
from backend.extensions import db, redis_client
from backend.models import Conversation, ConversationMessage, User, Workspace
from backend.models.types import utcnow
from backend.services.conversation_search import is_common, matches_text, probe_page
from backend.services.messages import append_message, lock_conversation
from backend.services.pagination import page
from backend.services.rows import save_new, update_fields
from backend.services.workspaces import check_owner, get_owned, parse_id
from backend.streams import publish_message, stream_key


def list_order(source=Conversation) -> tuple:
    """The list order over `source` (the model, an alias or a subquery's columns)."""
    return (
        source.last_message_at.desc().nulls_last(),
        source.created_at.desc(),
        source.id.desc(),
    )


LIST_ORDER = list_order()


def has_tag(tag: str):
    """`tags` contains `tag`: JSONB containment (GIN-indexable) on PostgreSQL, json_each elsewhere."""
    if db.engine.dialect.name == "postgresql":
        return type_coerce(Conversation.tags, JSONB).contains([tag])
    each = func.json_each(Conversation.tags).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value == tag))


def active_since(since: datetime):
    """Activity at or after `since`: the last message, or creation when there is none."""
    return or_(
        Conversation.last_message_at >= since,
        and_(Conversation.last_message_at.is_(None), Conversation.created_at >= since),
    )


def list_conversations(workspace: Workspace, args: dict) -> tuple[list[Conversation], int]:
    conditions = [Conversation.workspace_id == workspace.id]
    if args.get("status"):
        conditions.append(Conversation.status == args["status"])
    if args.get("channel"):
        conditions.append(Conversation.channel == args["channel"])
    if args.get("tag"):
        conditions.append(has_tag(args["tag"]))
    if args.get("since"):
        conditions.append(active_since(args["since"]))
    if args.get("handoff") == "requested":
        conditions.append(Conversation.handoff_requested_at.is_not(None))
    q = args.get("q")
    if q and is_common(q, workspace.id):
        search = {name: value for name, value in args.items() if name not in ("skip", "limit")}
        return probe_page(q, workspace.id, conditions, list_order, args["skip"], args["limit"], search)
    if q:
        conditions.append(matches_text(q, workspace.id))
    return page(Conversation, conditions, LIST_ORDER, args["skip"], args["limit"])


def get_accessible_conversation(user: User, conversation_id: uuid.UUID | str) -> Conversation:
    return get_owned(user, Conversation, conversation_id, "Conversation")


def create_conversation(workspace: Workspace, data: dict) -> Conversation:
    """An owner-created conversation: no visitor token (only the public flow issues one)."""
    return save_new(Conversation(workspace_id=workspace.id, **data))


def update_conversation(conversation: Conversation, data: dict) -> Conversation:
    return update_fields(conversation, data)


def delete_conversation(conversation: Conversation) -> None:
    """Its messages and runs go with it (ON DELETE CASCADE in the database), and so
    does its event stream, which would otherwise live on until it expires."""
    conversation_id = conversation.id
    db.session.delete(conversation)
    db.session.commit()
    redis_client().delete(stream_key(conversation_id))


def list_messages(conversation: Conversation, skip: int, limit: int) -> tuple[list[ConversationMessage], int]:
    return page(
        ConversationMessage,
        [ConversationMessage.conversation_id == conversation.id],
        [ConversationMessage.timestamp, ConversationMessage.id],
        skip,
        limit,
    )


def message_page(user: User, conversation_id: uuid.UUID | str, skip: int, limit: int) -> dict:
    """`{data, count}` of a conversation's messages, oldest first (both owner routes)."""
    items, count = list_messages(get_accessible_conversation(user, conversation_id), skip, limit)
    return {"data": items, "count": count}


def post_owner_message(conversation: Conversation, content: str) -> ConversationMessage:
    """Appends an owner message under the conversation's row lock, commits, and shows it
    to a visitor who is watching the conversation's event stream."""
    locked = lock_conversation(conversation.id)
    message = append_message(locked, "owner", content.strip())
    db.session.commit()
    publish_message(conversation.id, message)
    return message


def log_message(
    conversation: Conversation, role: str, content: str, timestamp: datetime | None = None
) -> ConversationMessage:
    """Logs a message of the conversation as the business recorded it (any channel, any
    role, optionally with its original timestamp); no agent run is started. Shown, like an
    owner message, to a visitor watching the conversation's event stream."""
    locked = lock_conversation(conversation.id)
    try:
        message = append_message(locked, role, content.strip(), timestamp=timestamp)
    except Exception:
        db.session.rollback()
        raise
    db.session.commit()
    publish_message(conversation.id, message)
    return message


def get_accessible_message(user: User, message_id: uuid.UUID | str) -> ConversationMessage:
    row = db.session.execute(
        select(ConversationMessage, Workspace.owner_id)
        .join(Conversation, Conversation.id == ConversationMessage.conversation_id)
        .join(Workspace, Workspace.id == Conversation.workspace_id)
        .where(ConversationMessage.id == parse_id(message_id, "Message"))
    ).first()
    if row is None:
        raise not_found("Message")
    check_owner(user, row[1])
    return row[0]


def delete_message(message: ConversationMessage) -> None:
    """Deletes one message (a visitor message takes its run along, by cascade).

    last_message_at is left as it is: it records the latest activity, and
    rewinding it could hand a later message a timestamp a `since` reader has seen.
    The conversation row is touched (updated_at), as every change of what a search finds
    in it is (services.search_counts).
    """
    db.session.execute(
        update(Conversation).where(Conversation.id == message.conversation_id).values(updated_at=utcnow())
    )
    db.session.delete(message)
    db.session.commit()
