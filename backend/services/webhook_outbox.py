"""The webhook outbox: event rows written in the transaction of the change that causes them.

Rather than a call in every service that creates a conversation or a message or finishes
a run, one `before_flush` listener watches what the session is about to write:

- a new Conversation                       -> conversation.created
- a new ConversationMessage (any role)     -> message.created
- an AgentRun turning `completed`          -> reply.completed
- a new run reply whose run called the booking-link tool, while the workspace has a
  usable booking link                      -> booking_link.shared
- Conversation.handoff_requested_at set    -> handoff.requested (the agent asked for a person)

and adds a WebhookEvent row to the same flush, so the event commits or rolls back with
the change. After the commit, one task (`fan_out_webhook_events`, queue `webhooks`) is sent
with the new ids; if it is lost (broker down, crash right after the commit), the worker's
sweep finds the events not fanned out yet and sends them anyway.

A workspace without subscriptions costs nothing but a dictionary look-up: which event
types a workspace subscribes to is cached per process for WEBHOOK_SUBSCRIPTION_CACHE_SECONDS
(one indexed query per workspace per period), and changes made through this process
forget the cached entry at once.
"""

import logging
import threading
import time
import uuid

from flask import Flask, current_app, has_app_context
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session

from backend.models import (
    AgentRun,
    Conversation,
    ConversationMessage,
    WebhookEvent,
    WebhookSubscription,
)
from backend.models.types import utcnow
from backend.rules.connectors import usable_link
from backend.services.connectors import active_connector

log = logging.getLogger(__name__)
QUEUE = "webhooks"
FAN_OUT_TASK = "backend.tasks.fan_out_webhook_events"
DELIVER_TASK = "backend.tasks.deliver_webhook"
PENDING = "webhook_event_ids"  # session.info key: ids written by the open transaction
BOOKING_TOOL = "get_booking_link"


class SubscriptionCache:
    """Workspace id -> the event types its active subscriptions want, for a few seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[uuid.UUID, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def event_types(self, session: Session, workspace_id: uuid.UUID) -> frozenset[str]:
        now = time.monotonic()
        entry = self._entries.get(workspace_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        rows = session.execute(
            select(WebhookSubscription.events).where(
                WebhookSubscription.workspace_id == workspace_id, WebhookSubscription.is_active.is_(True)
            )
        ).scalars()
        types = frozenset(t for events in rows for t in (events or []) if isinstance(t, str))
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            self._entries[workspace_id] = (now + self.ttl, types)
        return types

    def forget(self, workspace_id: uuid.UUID) -> None:
        with self._lock:
            self._entries.pop(workspace_id, None)


def forget_workspace(workspace_id: uuid.UUID) -> None:
    """Called when this process changes a workspace's subscriptions."""
    current_app.extensions["webhook_subscriptions"].forget(workspace_id)


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _conversation_data(conversation: Conversation) -> dict:
    return {
        "conversation_id": str(conversation.id),
        "channel": conversation.channel,
        "status": conversation.status,
        "visitor_name": conversation.visitor_name,
        "visitor_email": conversation.visitor_email,
    }


def _message_data(message: ConversationMessage) -> dict:
    return {
        "conversation_id": str(message.conversation_id),
        "message_id": str(message.id),
        "role": message.role,
        "content": message.content,
        "timestamp": _iso(message.timestamp),
        "run_id": str(message.run_id) if message.run_id else None,
    }


def _booking_link(session: Session, workspace_id: uuid.UUID) -> dict | None:
    connector = active_connector(workspace_id, session)
    link = usable_link(connector.config) if connector is not None else None
    return {"type": connector.type, "link": link} if connector is not None and link else None


class _Recorder:
    """Collects the events of one flush."""

    def __init__(self, session: Session, cache: SubscriptionCache) -> None:
        self.session = session
        self.cache = cache
        self.new_messages = {m.id: m for m in session.new if isinstance(m, ConversationMessage)}

    def workspace_of(self, conversation_id) -> uuid.UUID | None:
        conversation = self.session.get(Conversation, conversation_id)
        return conversation.workspace_id if conversation is not None else None

    def record(self, workspace_id, event_type: str, data: dict) -> None:
        if workspace_id is None or event_type not in self.cache.event_types(self.session, workspace_id):
            return
        row = WebhookEvent(
            id=uuid.uuid4(), workspace_id=workspace_id, type=event_type, data=data, created_at=utcnow()
        )
        self.session.add(row)
        self.session.info.setdefault(PENDING, []).append(str(row.id))

    def conversation(self, conversation: Conversation) -> None:
        if conversation.id is None:
            conversation.id = uuid.uuid4()
        self.record(conversation.workspace_id, "conversation.created", _conversation_data(conversation))

    def message(self, message: ConversationMessage) -> None:
        if message.id is None:
            message.id = uuid.uuid4()
        workspace_id = self.workspace_of(message.conversation_id)
        self.record(workspace_id, "message.created", _message_data(message))
        tools = (message.meta or {}).get("tool_calls") if isinstance(message.meta, dict) else None
        if message.run_id and isinstance(tools, list) and BOOKING_TOOL in tools and workspace_id:
            if "booking_link.shared" in self.cache.event_types(self.session, workspace_id):
                link = _booking_link(self.session, workspace_id)
                if link is not None:
                    data = {
                        **link,
                        "conversation_id": str(message.conversation_id),
                        "run_id": str(message.run_id),
                    }
                    self.record(workspace_id, "booking_link.shared", {**data, "message_id": str(message.id)})

    def run(self, run: AgentRun) -> None:
        if run.status != "completed" or "completed" not in inspect(run).attrs.status.history.added:
            return
        reply = self.new_messages.get(run.reply_message_id) if run.reply_message_id else None
        data = {
            "conversation_id": str(run.conversation_id),
            "run_id": str(run.id),
            "message_id": str(run.reply_message_id) if run.reply_message_id else None,
            "content": reply.content if reply is not None else "",
            "degraded": bool(run.degraded),
        }
        self.record(self.workspace_of(run.conversation_id), "reply.completed", data)

    def handoff(self, conversation: Conversation) -> None:
        history = inspect(conversation).attrs.handoff_requested_at.history
        if not history.added or history.added[0] is None or (history.deleted and history.deleted[0]):
            return
        data = {
            "conversation_id": str(conversation.id),
            "reason": conversation.handoff_reason,
            "requested_at": _iso(conversation.handoff_requested_at),
        }
        self.record(conversation.workspace_id, "handoff.requested", data)


def _before_flush(session: Session, _context, _instances) -> None:
    if not has_app_context():
        return
    cache = current_app.extensions.get("webhook_subscriptions")
    if cache is None:
        return
    new = [obj for obj in session.new if isinstance(obj, Conversation | ConversationMessage)]
    runs = [obj for obj in session.dirty if isinstance(obj, AgentRun)]
    conversations = [obj for obj in session.dirty if isinstance(obj, Conversation)]
    if not new and not runs and not conversations:
        return
    recorder = _Recorder(session, cache)
    with session.no_autoflush:
        for obj in sorted(new, key=lambda o: isinstance(o, ConversationMessage)):
            if isinstance(obj, Conversation):
                recorder.conversation(obj)
            else:
                recorder.message(obj)
        for run in runs:
            recorder.run(run)
        for conversation in conversations:
            recorder.handoff(conversation)


def _after_commit(session: Session) -> None:
    ids = session.info.pop(PENDING, None)
    if ids and has_app_context():
        send_fan_out(ids)


def _after_rollback(session: Session) -> None:
    session.info.pop(PENDING, None)


def send_fan_out(event_ids: list[str]) -> None:
    """Asks a worker to fan these committed events out; on failure the sweep does it later."""
    try:
        current_app.extensions["celery"].send_task(FAN_OUT_TASK, args=[event_ids], queue=QUEUE)
    except Exception:
        log.exception("could not enqueue %d webhook event(s); the sweep will send them", len(event_ids))


def send_delivery(delivery_id, countdown: float | None = None) -> None:
    try:
        current_app.extensions["celery"].send_task(
            DELIVER_TASK, args=[str(delivery_id)], queue=QUEUE, countdown=countdown
        )
    except Exception:
        log.exception("could not enqueue webhook delivery %s; the sweep will send it", delivery_id)


_listening = False


def init_app(app: Flask) -> None:
    """Gives the app its subscription cache and (once per process) installs the listeners."""
    global _listening
    app.extensions["webhook_subscriptions"] = SubscriptionCache(
        app.config["WEBHOOK_SUBSCRIPTION_CACHE_SECONDS"]
    )
    if not _listening:
        event.listen(Session, "before_flush", _before_flush)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)
        _listening = True
