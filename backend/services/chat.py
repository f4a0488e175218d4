"""The public chat: anonymous visitors, their conversations, messages and runs.

A visitor holds a bearer secret per conversation (the visitor token); only its
sha256 is stored. Posting a message writes the message and its queued run in
one transaction; the caller dispatches the run (services.dispatch) after the commit,
once it has the visitor's stream cursor.
"""

import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from backend.errors import AppError, Conflict, Unauthorized, not_found
from backend.extensions import db
from backend.models import AgentRun, Conversation, ConversationMessage, Workspace, WorkspaceService
from backend.rules.handles import handle_problem
from backend.services import dispatch, runs
from backend.services.messages import append_message, lock_conversation
from backend.services.rows import commit_keeping_state
from backend.streams import (
    RunPublisher,
    cursor_is_lost,
    id_before,
    is_valid_id,
    last_entry_id,
    run_start_cursor,
)

log = logging.getLogger(__name__)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def active_workspace(handle: str) -> Workspace:
    """The active workspace with this handle; anything that cannot be a handle is a 404
    before it reaches the database (PostgreSQL would refuse a NUL, for one)."""
    if handle_problem(handle) is not None:
        raise not_found("Workspace")
    workspace = db.session.execute(
        select(Workspace).where(Workspace.handle == handle, Workspace.is_active.is_(True))
    ).scalar_one_or_none()
    if workspace is None:
        raise not_found("Workspace")
    return workspace


def public_profile(handle: str) -> dict:
    workspace = active_workspace(handle)
    services = db.session.execute(
        select(WorkspaceService)
        .where(WorkspaceService.workspace_id == workspace.id, WorkspaceService.is_active.is_(True))
        .order_by(WorkspaceService.sort_order, WorkspaceService.name)
    ).scalars()
    return {
        "handle": workspace.handle,
        "public_name": workspace.public_name or workspace.name,
        "subtitle": workspace.subtitle,
        "description": workspace.description,
        "profile_image_url": workspace.profile_image_url,
        "services": list(services),
    }


def start_conversation(handle: str, visitor_name: str | None) -> tuple[Conversation, str]:
    workspace = active_workspace(handle)
    token = secrets.token_urlsafe(32)
    conversation = Conversation(
        workspace_id=workspace.id,
        visitor_name=(visitor_name or "").strip() or None,
        channel="web_public",
        status="active",
        tags=[],
        visitor_token_hash=_token_hash(token),
    )
    db.session.add(conversation)
    commit_keeping_state()  # the answer names its id and created_at: no read-back
    return conversation, token


def authorize_visitor(conversation_id: uuid.UUID, token: str | None, lock: bool = False) -> Conversation:
    """The conversation, if it exists (404) and the token is its visitor token (401).
    With `lock`, the row is read FOR UPDATE (messages.lock_conversation): a caller that
    writes to the conversation checks the token and takes the lock in one statement."""
    conversation = (
        lock_conversation(conversation_id) if lock else db.session.get(Conversation, conversation_id)
    )
    if conversation is None:
        raise not_found("Conversation")
    expected = conversation.visitor_token_hash
    if not token or not expected or not hmac.compare_digest(_token_hash(token), expected):
        raise Unauthorized("Missing or invalid visitor token")
    return conversation


@dataclass(frozen=True)
class PostedMessage:
    message: ConversationMessage
    run: AgentRun | None  # None: the conversation is paused (a person answers)
    created: bool


def _replay(conversation_id, idempotency_key: str, content: str) -> PostedMessage | None:
    message = db.session.execute(
        select(ConversationMessage).where(
            ConversationMessage.conversation_id == conversation_id,
            ConversationMessage.idempotency_key == idempotency_key,
        )
    ).scalar_one_or_none()
    if message is None:
        return None
    if message.content != content:
        raise Conflict("This idempotency_key was already used for a different message")
    run = db.session.execute(
        select(AgentRun).where(AgentRun.user_message_id == message.id)
    ).scalar_one_or_none()
    return PostedMessage(message, run, created=False)


def post_visitor_message(
    conversation: Conversation,
    content: str,
    idempotency_key: str | None,
    admit: Callable[[], None] = lambda: None,
) -> PostedMessage:
    """Saves a visitor message and its queued run (no run while the conversation is
    paused: a person answers); the same idempotency key replays them. `conversation` is
    locked by the caller (`authorize_visitor(..., lock=True)`), until this commits.

    `admit` runs only for a message that is not a replay, right before it is saved (the
    caller's rate limit): whatever it raises leaves nothing written."""
    content = content.strip()
    conversation_id = conversation.id
    if idempotency_key:
        replay = _replay(conversation_id, idempotency_key, content)
        if replay is not None:
            db.session.commit()
            return replay
    try:
        admit()
    except Exception:
        db.session.rollback()  # releases the conversation's lock
        raise
    message = append_message(conversation, "user", content, idempotency_key=idempotency_key)
    run = runs.create_run(conversation, message) if conversation.agent_mode == "auto" else None
    try:
        commit_keeping_state()
    except IntegrityError:
        # A concurrent post with the same key won the race (possible without row locks, e.g. SQLite).
        db.session.rollback()
        replay = _replay(conversation_id, idempotency_key, content) if idempotency_key else None
        if replay is None:
            raise
        return replay
    return PostedMessage(message, run, created=True)


def list_messages(conversation_id, since: datetime | None, limit: int) -> dict:
    """A page of messages, with the conversation's agent mode (a reloading visitor page
    shows whether the team has taken over)."""
    query = select(ConversationMessage).where(ConversationMessage.conversation_id == conversation_id)
    if since is not None:
        query = query.where(ConversationMessage.timestamp > since)
    messages = list(db.session.execute(query.order_by(ConversationMessage.timestamp).limit(limit)).scalars())
    next_since = messages[-1].timestamp if messages else since
    conversation = db.session.get(Conversation, conversation_id)  # loaded by the visitor check
    mode = conversation.agent_mode if conversation is not None else "auto"
    return {"messages": messages, "next_since": next_since, "agent_mode": mode}


def cursor_for_run(run: AgentRun) -> str:
    """A cursor from which a stream shows this run from its first event."""
    if run.first_event_id:
        return id_before(run.first_event_id)
    if run.status != "running":  # a queued run has published nothing yet
        return last_entry_id(run.conversation_id)
    return run_start_cursor(run.conversation_id, run.id)  # its first event id is saved at its end


def cursor_after_post(conversation_id: uuid.UUID, run: AgentRun | None) -> str | None:
    """The `stream_cursor` a post answers with (without a run: the stream's newest entry,
    so the owner's next message is seen), or None while Redis is unreachable: the
    message and its run are saved by then (the recovery loop sends the run once the
    broker answers again), and a stream opened without a cursor starts at the oldest
    unfinished run anyway, so the visitor loses nothing."""
    try:
        return cursor_for_run(run) if run is not None else last_entry_id(conversation_id)
    except redis.RedisError:
        log.warning("no stream cursor for conversation %s: Redis is unreachable", conversation_id)
        return None


@dataclass(frozen=True)
class StreamStart:
    cursor: str
    resync_reason: str | None = None


def stream_start(conversation_id, requested_cursor: str | None) -> StreamStart:
    """Where a visitor's stream starts (API.md): after their cursor, else at the oldest
    unfinished run's first event, else live. A cursor past what is kept means resync."""
    if requested_cursor:
        if not is_valid_id(requested_cursor):
            raise AppError(
                "Invalid last event id",
                status_code=422,
                errors={"last_event_id": ["Must be a stream entry id like 1700000000000-0."]},
            )
        if cursor_is_lost(conversation_id, requested_cursor):
            return StreamStart(last_entry_id(conversation_id), "cursor_expired")
        return StreamStart(requested_cursor)
    run = runs.oldest_unfinished_run(conversation_id)
    if run is not None:
        return StreamStart(cursor_for_run(run))
    return StreamStart(last_entry_id(conversation_id))


def cancel_run(conversation_id, run_id) -> AgentRun:
    """Cancels a run: a queued one ends now (its `message_end` says cancelled), a running
    one is flagged and its worker stops within a chunk."""
    run, next_run = runs.request_cancel(conversation_id, run_id)
    if run.status == "cancelled":
        publisher = RunPublisher(conversation_id, run.id, runs.reply_message_id(run.id))
        dispatch.close_stream(publisher, runs.Outcome("cancelled", "", {}))
    dispatch.dispatch_run(next_run)
    return run
