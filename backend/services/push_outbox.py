"""The push outbox: a notification row written in the transaction of the change that causes it.

Whoever sets a conversation's handoff request (the agent's `request_human` tool, an owner
route, a script), the session's listeners see it:

- a Conversation whose `handoff_requested_at` goes from NULL to a time  -> handoff.requested
  (set on the object: `before_flush`; by an `update(Conversation)` statement run through the
  session: `do_orm_execute`, which reads the matching rows still NULL before the update)
- a new Conversation in a workspace with `push_on_new_conversation`    -> conversation.created

and, when the workspace's owner has a push token, add a PushNotification row to the same
transaction, so the notification commits or rolls back with its cause. After the commit one task
(`send_push`, queue `push`) is sent per row; if it is lost, the `webhooks` worker's push sweep
(backend/services/push_sweep.py) sends the row anyway.

Cheap on the hot path: a flush of a conversation whose handoff column did not change costs an
attribute-history check (no query); a new conversation costs one primary-key look-up of its
workspace (usually already in the session), and a token query only when a push is due.
"""

import logging
import uuid

from flask import Flask, current_app, has_app_context
from sqlalchemy import BindParameter, Result, event, inspect, select
from sqlalchemy.orm import ORMExecuteState, Session

from backend.metrics import PUSH_QUEUE
from backend.models import Conversation, PushNotification, PushToken, Workspace
from backend.models.types import utcnow
from backend.rules.push import Notice, handoff_notice, new_conversation_notice

log = logging.getLogger(__name__)
QUEUE = PUSH_QUEUE
SEND_TASK = "backend.tasks.send_push"
PENDING = "push_notification_ids"  # session.info key: ids written by the open transaction


def _handoff_started(session: Session, conversation: Conversation) -> bool:
    """Whether this flush moves the conversation's handoff request from NULL to a time."""
    history = inspect(conversation).attrs.handoff_requested_at.history
    if not history.added or history.added[-1] is None:
        return False
    if history.deleted:
        return all(value is None for value in history.deleted)
    # Set without the old value loaded (an expired object): ask the database, which still
    # holds the value before this flush.
    table = Conversation.__table__
    previous = session.execute(
        select(table.c.handoff_requested_at).where(table.c.id == conversation.id)
    ).scalar_one_or_none()
    return previous is None


def _owner_with_tokens(session: Session, workspace: Workspace | None) -> uuid.UUID | None:
    if workspace is None:
        return None
    has_token = session.execute(
        select(PushToken.id).where(PushToken.user_id == workspace.owner_id).limit(1)
    ).first()
    return workspace.owner_id if has_token is not None else None


def _add(session: Session, owner_id: uuid.UUID, notice: Notice) -> None:
    now = utcnow()
    row = PushNotification(
        id=uuid.uuid4(),
        user_id=owner_id,
        workspace_id=uuid.UUID(notice.data["workspace_id"]),
        conversation_id=uuid.UUID(notice.data["conversation_id"]),
        type=notice.type,
        title=notice.title,
        body=notice.body,
        data=notice.data,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        done_tokens=[],
        created_at=now,
    )
    session.add(row)
    session.info.setdefault(PENDING, []).append(str(row.id))


def _notices(session: Session, conversation: Conversation, is_new: bool) -> list[Notice]:
    notices = []
    if is_new:
        if conversation.id is None:
            conversation.id = uuid.uuid4()
        if conversation.handoff_requested_at is not None:
            notices.append(_handoff(conversation))
        workspace = session.get(Workspace, conversation.workspace_id)
        if workspace is not None and workspace.push_on_new_conversation:
            notices.append(
                new_conversation_notice(conversation.id, conversation.workspace_id, conversation.visitor_name)
            )
    elif _handoff_started(session, conversation):
        notices.append(_handoff(conversation))
    return notices


def _handoff(conversation: Conversation) -> Notice:
    return handoff_notice(
        conversation.id, conversation.workspace_id, conversation.visitor_name, conversation.handoff_reason
    )


def _before_flush(session: Session, _context, _instances) -> None:
    if not has_app_context():
        return
    new = [obj for obj in session.new if isinstance(obj, Conversation)]
    changed = [obj for obj in session.dirty if isinstance(obj, Conversation)]
    if not new and not changed:
        return
    with session.no_autoflush:
        for conversation, is_new in [*((c, True) for c in new), *((c, False) for c in changed)]:
            notices = _notices(session, conversation, is_new)
            if not notices:
                continue
            owner_id = _owner_with_tokens(session, session.get(Workspace, conversation.workspace_id))
            if owner_id is None:
                continue
            for notice in notices:
                _add(session, owner_id, notice)


_UNSET = object()


def _handoff_value(statement) -> object:
    """What an UPDATE statement sets `handoff_requested_at` to (_UNSET when it does not)."""
    for key, value in (getattr(statement, "_values", None) or {}).items():
        if (key if isinstance(key, str) else getattr(key, "key", None)) == "handoff_requested_at":
            return value
    return _UNSET


def _do_orm_execute(state: ORMExecuteState) -> Result | None:
    """An `update(Conversation)...values(handoff_requested_at=...)` run through the session:
    the rows it will move from NULL are read first, then notified like a flush would."""
    if not state.is_update or not has_app_context():
        return None
    statement = state.statement
    if getattr(getattr(statement, "table", None), "name", None) != Conversation.__tablename__:
        return None
    value = _handoff_value(statement)
    if value is _UNSET or value is None or (isinstance(value, BindParameter) and value.value is None):
        return None
    table = Conversation.__table__
    query = select(table.c.id, table.c.workspace_id, table.c.visitor_name).where(
        table.c.handoff_requested_at.is_(None)
    )
    where = getattr(statement, "whereclause", None)
    starting = state.session.execute(query.where(where) if where is not None else query).all()
    result = state.invoke_statement()
    session = state.session
    with session.no_autoflush:
        for conversation_id, workspace_id, visitor_name in starting:
            reason = session.execute(
                select(table.c.handoff_reason).where(table.c.id == conversation_id)
            ).scalar_one_or_none()
            owner_id = _owner_with_tokens(session, session.get(Workspace, workspace_id))
            if owner_id is not None:
                _add(session, owner_id, handoff_notice(conversation_id, workspace_id, visitor_name, reason))
    return result


def _after_commit(session: Session) -> None:
    ids = session.info.pop(PENDING, None)
    if ids and has_app_context():
        for notification_id in ids:
            send_push(notification_id)


def _after_rollback(session: Session) -> None:
    session.info.pop(PENDING, None)


def send_push(notification_id, countdown: float | None = None) -> None:
    """Asks a worker to send this committed notification; on failure the sweep does it later."""
    try:
        current_app.extensions["celery"].send_task(
            SEND_TASK, args=[str(notification_id)], queue=QUEUE, countdown=countdown
        )
    except Exception:
        log.exception("could not enqueue push notification %s; the sweep will send it", notification_id)


_listening = False


def init_app(_app: Flask) -> None:
    """Installs the listeners (once per process)."""
    global _listening
    if not _listening:
        event.listen(Session, "before_flush", _before_flush)
        event.listen(Session, "do_orm_execute", _do_orm_execute)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)
        _listening = True
