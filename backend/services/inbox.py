"""The owner's live inbox: tickets for browsers, the listening mark, where a stream starts.

A browser's EventSource cannot send an Authorization header, so the owner first trades the
bearer token for a ticket: a random secret, single use, valid INBOX_TICKET_SECONDS, kept in
Redis under its sha256 with the workspace and user it was issued for. Opening the stream
takes it back (GETDEL), so a second use, an expired ticket or one issued for another
workspace is a 401.

Events are written to a workspace's inbox stream only while its listening mark exists
(backend.services.inbox_events): every stream that opens sets it, for long enough to outlive
the connection (SSE_MAX_SECONDS) and to resume within the stream's own lifetime. A stream
that resumes after the mark lapsed may have missed events, so it starts with `resync`.
"""

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app

from backend.errors import AppError, Unauthorized
from backend.extensions import db, redis_client
from backend.models import User, Workspace
from backend.models.types import utcnow
from backend.streams import cursor_lost_in, inbox_key, inbox_listening_key, is_valid_id, last_id_of

TICKET_ERROR = "Invalid or expired ticket"
TICKET_MAX_CHARS = 200  # issued tickets have 43; anything longer is not one


def ticket_key(ticket: str) -> str:
    return "inbox-ticket:" + hashlib.sha256(ticket.encode("utf-8", "surrogatepass")).hexdigest()


def issue_ticket(user: User, workspace: Workspace) -> dict:
    """A single-use ticket for `workspace`'s event stream (the caller checked access)."""
    seconds = current_app.config["INBOX_TICKET_SECONDS"]
    ticket = secrets.token_urlsafe(32)
    value = json.dumps({"w": str(workspace.id), "u": str(user.id), "v": user.token_version})
    redis_client().set(ticket_key(ticket), value, ex=seconds)
    return {"ticket": ticket, "expires_at": utcnow() + timedelta(seconds=seconds)}


def redeem_ticket(workspace_id: str, ticket: str) -> User:
    """The active user a ticket was issued to for this workspace; it is used up either way."""
    if not ticket or len(ticket) > TICKET_MAX_CHARS:
        raise Unauthorized(TICKET_ERROR)
    raw = redis_client().getdel(ticket_key(ticket))
    if raw is None:
        raise Unauthorized(TICKET_ERROR)
    issued = json.loads(raw)
    if issued["w"] != _canonical(workspace_id):
        raise Unauthorized(TICKET_ERROR)
    user = db.session.get(User, uuid.UUID(issued["u"]))
    # A password change since the ticket was issued revokes it, as it revokes access tokens.
    if user is None or not user.is_active or user.token_version != issued["v"]:
        raise Unauthorized(TICKET_ERROR)
    return user


def _canonical(workspace_id: str) -> str | None:
    try:
        return str(uuid.UUID(workspace_id))
    except (ValueError, TypeError, AttributeError):
        return None


def listening_seconds() -> int:
    config = current_app.config
    return int(max(config["STREAM_TTL_SECONDS"], 2 * config["SSE_MAX_SECONDS"]))


def mark_listening(workspace_id) -> bool:
    """Sets (or extends) the workspace's listening mark; True when it was already set."""
    previous = redis_client().set(inbox_listening_key(workspace_id), "1", ex=listening_seconds(), get=True)
    return previous is not None


@dataclass(frozen=True)
class InboxStart:
    cursor: str
    resync_reason: str | None = None


def stream_start(workspace_id, requested_cursor: str | None) -> InboxStart:
    """After the client's cursor, else live; `resync` when events after the cursor may be
    gone (trimmed, expired, or not written because nobody was listening)."""
    if requested_cursor and not is_valid_id(requested_cursor):
        raise AppError(
            "Invalid last event id",
            status_code=422,
            errors={"last_event_id": ["Must be a stream entry id like 1700000000000-0."]},
        )
    key = inbox_key(workspace_id)
    was_listening = mark_listening(workspace_id)
    if requested_cursor:
        if not was_listening or cursor_lost_in(key, requested_cursor):
            return InboxStart(last_id_of(key), "cursor_expired")
        return InboxStart(requested_cursor)
    return InboxStart(last_id_of(key))
