"""The owner's live inbox: events derived from what a session commits, wherever it commits.

Rather than a call in every service (and in the agent, the takeover and the handoff tool),
one `after_flush` listener reads what the session just wrote:

- a new Conversation                              -> conversation.created
- a new ConversationMessage (any role)            -> message.created
- an AgentRun turning `running`                   -> run.started
- an AgentRun turning completed|failed|cancelled  -> run.finished
- Conversation.handoff_requested_at set           -> handoff.requested
- a change to a Conversation's fields in UPDATED  -> conversation.updated {changes}
- a deleted Conversation                          -> conversation.updated {deleted: true}

The events wait in `session.info` and are written to the workspace's inbox stream only
after the commit succeeds (a rollback drops them). In a Celery task they go with the
process's StreamWriter batch (no round trip of their own); elsewhere (a web request) all
the events of one commit take one pipelined round trip. Each workspace's write is one
conditional script: while nobody listens to the inbox (no listening mark, see
backend.services.inbox) it writes and announces nothing. Redis being away never fails the
commit's caller: the events are lost and a warning logged (the inbox reconnects to `resync`).
"""

import logging
import uuid
from typing import TypeVar

import redis
from celery import current_task
from flask import Flask, current_app, has_app_context
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from backend.extensions import app_state, redis_client
from backend.models import AgentRun, Conversation, ConversationMessage
from backend.models.run import FINISHED_STATUSES
from backend.streams import InboxWrite, encode, queue_inbox_writes, stream_writer

log = logging.getLogger(__name__)
T = TypeVar("T")
PENDING = "inbox_events"  # session.info key: (workspace id, event, data) of the open transaction
PREVIEW_CHARS = 1000  # message content in an event; the whole message is one REST call away
# Conversation fields whose change an inbox shows (not last_message_at, human_time_saved or
# updated_at: message.created and run.finished already say those changed).
UPDATED = (
    "status",
    "tags",
    "agent_mode",
    "handoff_requested_at",
    "handoff_reason",
    "visitor_name",
    "visitor_email",
    "channel",
)
_WORKSPACE_CACHE_SIZE = 10_000


def _workspaces() -> dict[uuid.UUID, uuid.UUID]:
    """The app's conversation -> workspace cache (a conversation never changes workspace)."""
    return app_state("inbox_workspaces", lambda _app: {})


def _remember(conversation_id: uuid.UUID, workspace_id: uuid.UUID) -> None:
    cache = _workspaces()
    if len(cache) >= _WORKSPACE_CACHE_SIZE:
        cache.clear()  # simpler than an LRU; a miss costs one query by primary key
    cache[conversation_id] = workspace_id


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _plain(value):
    return _iso(value) if hasattr(value, "isoformat") else value


def _workspace_of(session: Session, conversation_id: uuid.UUID) -> uuid.UUID | None:
    """The conversation's workspace: from the session (the services lock the conversation
    they write to), else a per-process cache (conversations never move), else one query."""
    conversation = session.identity_map.get(identity_key(Conversation, conversation_id))
    if conversation is not None:
        return conversation.workspace_id
    workspace_id = _workspaces().get(conversation_id)
    if workspace_id is None:
        workspace_id = session.execute(
            select(Conversation.workspace_id).where(Conversation.id == conversation_id)
        ).scalar_one_or_none()
        if workspace_id is not None:
            _remember(conversation_id, workspace_id)
    return workspace_id


def conversation_created(conversation: Conversation) -> dict:
    return {
        "conversation_id": str(conversation.id),
        "channel": conversation.channel,
        "status": conversation.status,
        "agent_mode": conversation.agent_mode or "auto",
        "visitor_name": conversation.visitor_name,
        "visitor_email": conversation.visitor_email,
        "tags": list(conversation.tags or []),
        "created_at": _iso(conversation.created_at),
    }


def message_created(message: ConversationMessage) -> dict:
    content = message.content or ""
    return {
        "conversation_id": str(message.conversation_id),
        "message_id": str(message.id),
        "role": message.role,
        "content": content[:PREVIEW_CHARS],
        "truncated": len(content) > PREVIEW_CHARS,
        "timestamp": _iso(message.timestamp),
        "run_id": str(message.run_id) if message.run_id else None,
    }


def _run_event(run: AgentRun) -> tuple[str, dict] | None:
    history = inspect(run).attrs.status.history
    if not history.added or history.added[0] == (history.deleted[0] if history.deleted else None):
        return None
    base = {"conversation_id": str(run.conversation_id), "run_id": str(run.id)}
    if run.status == "running":
        started = {"user_message_id": str(run.user_message_id), "started_at": _iso(run.started_at)}
        return "run.started", {**base, **started}
    if run.status in FINISHED_STATUSES:
        finished = {
            "status": run.status,
            "degraded": bool(run.degraded),
            "reply_message_id": str(run.reply_message_id) if run.reply_message_id else None,
            "error_code": (run.error or {}).get("code") if isinstance(run.error, dict) else None,
            "finished_at": _iso(run.finished_at),
        }
        return "run.finished", {**base, **finished}
    return None


def _conversation_events(conversation: Conversation) -> list[tuple[str, dict]]:
    state = inspect(conversation)
    changes = {}
    for name in UPDATED:
        history = state.attrs[name].history
        if history.added and (not history.deleted or history.deleted[0] != history.added[0]):
            changes[name] = _plain(history.added[0])
    if not changes:
        return []
    conversation_id = str(conversation.id)
    events = []
    requested = state.attrs.handoff_requested_at.history
    if "handoff_requested_at" in changes and changes["handoff_requested_at"] is not None:
        if not requested.deleted or requested.deleted[0] is None:
            data = {
                "conversation_id": conversation_id,
                "reason": conversation.handoff_reason,
                "requested_at": changes["handoff_requested_at"],
            }
            events.append(("handoff.requested", data))
    updated = {"conversation_id": conversation_id, "changes": changes, "agent_mode": conversation.agent_mode}
    events.append(("conversation.updated", {**updated, "deleted": False}))
    return events


def _after_flush(session: Session, _context) -> None:
    if not has_app_context():
        return
    found: list[tuple[uuid.UUID | None, str, dict]] = []
    try:
        with session.no_autoflush:
            _collect(session, found)
    except Exception:  # the inbox must never break a write
        log.warning("inbox events of a flush not collected", exc_info=True)
        return
    if found:
        session.info.setdefault(PENDING, []).extend(found)


def _collect(session: Session, found: list) -> None:
    """Events in the order an inbox expects: conversations, messages, runs, then changes."""
    new, dirty = list(session.new), list(session.dirty)
    for conversation in _of(new, Conversation):
        _remember(conversation.id, conversation.workspace_id)
        found.append((conversation.workspace_id, "conversation.created", conversation_created(conversation)))
    for message in _of(new, ConversationMessage):
        found.append(
            (_workspace_of(session, message.conversation_id), "message.created", message_created(message))
        )
    for run in _of(dirty, AgentRun):
        run_event = _run_event(run)
        if run_event is not None:
            found.append((_workspace_of(session, run.conversation_id), *run_event))
    for conversation in _of(dirty, Conversation):
        found.extend((conversation.workspace_id, *item) for item in _conversation_events(conversation))
    for conversation in _of(list(session.deleted), Conversation):
        data = {"conversation_id": str(conversation.id), "changes": {}, "agent_mode": conversation.agent_mode}
        found.append((conversation.workspace_id, "conversation.updated", {**data, "deleted": True}))


def _of(objects: list, model: type[T]) -> list[T]:
    return [obj for obj in objects if isinstance(obj, model)]


def _after_commit(session: Session) -> None:
    found = session.info.pop(PENDING, None)
    if found and has_app_context():
        send(found)


def _after_rollback(session: Session) -> None:
    session.info.pop(PENDING, None)


def _writes(found: list) -> list[InboxWrite]:
    config = current_app.config
    maxlen, ttl = config["STREAM_MAXLEN"], config["STREAM_TTL_SECONDS"]
    per_workspace: dict[str, list[tuple[str, str]]] = {}
    for workspace_id, name, data in found:
        if workspace_id is not None:
            per_workspace.setdefault(str(workspace_id), []).append((name, encode(data)))
    return [(workspace_id, events, maxlen, ttl) for workspace_id, events in per_workspace.items()]


def _in_worker_task() -> bool:
    # `current_task` is a proxy: false outside a task (web requests, the recovery loop, CLI).
    return bool(current_task) and not current_task.request.is_eager


def send(found: list) -> None:
    """Writes committed events: with the worker's batch inside a Celery task, else now."""
    try:
        writes = _writes(found)
        if not writes:
            return
        if _in_worker_task():
            stream_writer().queue_inbox(writes)
            return
        pipe = redis_client().pipeline(transaction=False)
        queue_inbox_writes(pipe, writes)
        pipe.execute()
    except redis.RedisError as error:
        log.warning("%d inbox event(s) lost: Redis is unreachable (%s)", len(found), error)
    except Exception:
        log.exception("%d inbox event(s) lost", len(found))


_listening = False


def init_app(_app: Flask) -> None:
    """Installs the session listeners (once per process)."""
    global _listening
    if not _listening:
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)
        _listening = True
