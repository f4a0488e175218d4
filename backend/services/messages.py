"""Appending messages to a conversation: the one place that orders them.

Every message gets a timestamp strictly later than the conversation's previous
one, taken while the conversation row is locked, so `since` paging (exclusive)
never skips or repeats a message even when two arrive in the same microsecond.
A message imported with its original timestamp keeps it, and is refused (409)
unless it is later than the conversation's last message.
"""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select

from backend.errors import Conflict, not_found
from backend.extensions import db
from backend.models import AgentRun, Conversation, ConversationMessage
from backend.models.types import utcnow

ONE_MICROSECOND = timedelta(microseconds=1)


def lock_run_conversation(run_id: uuid.UUID) -> Conversation | None:
    """Locks (FOR UPDATE) the conversation of a run, found in the same statement; None when
    the run does not exist. Whatever the caller reads of the run afterwards is current."""
    run_conversation = select(AgentRun.conversation_id).where(AgentRun.id == run_id).scalar_subquery()
    return db.session.execute(
        select(Conversation)
        .where(Conversation.id == run_conversation)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def lock_conversation(conversation_id: uuid.UUID) -> Conversation:
    """Loads the conversation FOR UPDATE (a no-op lock on SQLite, which serialises writers),
    its attributes read afresh under the lock even when the session already holds the row
    (an access check loaded it before another request changed it)."""
    conversation = db.session.execute(
        select(Conversation)
        .where(Conversation.id == conversation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if conversation is None:
        raise not_found("Conversation")
    return conversation


def append_message(
    conversation: Conversation,
    role: str,
    content: str,
    *,
    message_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    run_id: uuid.UUID | None = None,
    meta: dict | None = None,
    timestamp: datetime | None = None,
) -> ConversationMessage:
    """Adds a message to a conversation the caller has locked; the caller commits.

    `timestamp` (a message imported from another channel) is kept as given, so it must
    be later than the conversation's last message (last_message_at, which deletes never
    rewind): an earlier one is a 409, never a reordering of what readers have seen."""
    now = utcnow()
    previous = conversation.last_message_at
    if timestamp is not None:
        if previous is not None and timestamp <= previous:
            raise Conflict(
                "timestamp must be later than the conversation's latest message "
                f"({previous.isoformat()}): log imported messages oldest first"
            )
    else:
        timestamp = now if previous is None or now > previous else previous + ONE_MICROSECOND
    message = ConversationMessage(
        id=message_id or uuid.uuid4(),
        conversation_id=conversation.id,
        role=role,
        content=content,
        timestamp=timestamp,
        created_at=now,
        idempotency_key=idempotency_key,
        run_id=run_id,
        meta=meta or {},
    )
    db.session.add(message)
    conversation.last_message_at = timestamp
    return message
