"""Agent-run lifecycle: queued -> running -> completed | failed | cancelled.

Every transition happens with the conversation row locked, which gives the two
rules the product promises: runs of one conversation execute one at a time in
arrival order, and a run is claimed and finished exactly once, whatever Celery
redelivers. Finishing a run hands back the next queued run of its conversation,
which the caller enqueues after the commit.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

import redis
from flask import current_app
from sqlalchemy import Exists, exists, select, text, update
from sqlalchemy.orm import aliased

from backend.errors import Conflict, not_found
from backend.extensions import db, redis_client
from backend.models import AgentRun, Conversation, ConversationMessage
from backend.models.run import FINISHED_STATUSES, UNFINISHED_STATUSES
from backend.models.types import utcnow
from backend.services.messages import append_message, lock_conversation, lock_run_conversation
from backend.streams import cancel_key

log = logging.getLogger(__name__)
REPLY_NAMESPACE = uuid.UUID("6f1c3b8e-8d0e-4c55-9a43-2f4e5a0c7b11")


def reply_message_id(run_id: uuid.UUID) -> uuid.UUID:
    """The id a run's reply is saved under: fixed in advance, so message_start can name it
    and a second attempt at saving collides with the primary key instead of duplicating."""
    return uuid.uuid5(REPLY_NAMESPACE, str(run_id))


@dataclass(frozen=True)
class ClaimedRun:
    run_id: uuid.UUID
    conversation_id: uuid.UUID
    workspace_id: uuid.UUID
    user_message_id: uuid.UUID
    reply_message_id: uuid.UUID
    attempt: int


def _earlier_run_unfinished() -> Exists:
    """In a query of AgentRun: whether an earlier run of the same conversation is unfinished."""
    earlier = aliased(AgentRun)
    return exists().where(
        earlier.conversation_id == AgentRun.conversation_id,
        earlier.status.in_(UNFINISHED_STATUSES),
        earlier.created_at < AgentRun.created_at,
    )


def _next_queued_run(conversation_id: uuid.UUID) -> uuid.UUID | None:
    return db.session.execute(
        select(AgentRun.id)
        .where(AgentRun.conversation_id == conversation_id, AgentRun.status == "queued")
        .order_by(AgentRun.created_at)
        .limit(1)
    ).scalar_one_or_none()


def get_run(conversation_id: uuid.UUID, run_id: uuid.UUID) -> AgentRun:
    run = db.session.get(AgentRun, run_id)
    if run is None or run.conversation_id != conversation_id:
        raise not_found("Run")
    return run


def create_run(conversation: Conversation, user_message: ConversationMessage) -> AgentRun:
    """Adds a queued run for a visitor message (the caller commits, then enqueues)."""
    run = AgentRun(
        id=uuid.uuid4(),
        conversation_id=conversation.id,
        user_message_id=user_message.id,
        status="queued",
        created_at=user_message.timestamp,
        heartbeat_at=utcnow(),
    )
    db.session.add(run)
    return run


def _runnable(run_id: uuid.UUID) -> AgentRun | None:
    """The run, read afresh in one statement, if it is queued and no earlier run of its
    conversation is unfinished (the caller holds the conversation's lock)."""
    found = db.session.execute(
        select(AgentRun, _earlier_run_unfinished())
        .where(AgentRun.id == run_id)
        .execution_options(populate_existing=True)
    ).first()
    if found is None or found[0].status != "queued" or found[1]:
        return None
    return found[0]


def claim_run(run_id: uuid.UUID) -> ClaimedRun | None:
    """Marks a queued run running, unless it already ran or an earlier run is unfinished."""
    conversation = lock_run_conversation(run_id)
    run = _runnable(run_id) if conversation else None
    if conversation is None or run is None:
        db.session.rollback()
        return None
    now = utcnow()
    run.status, run.started_at, run.heartbeat_at = "running", now, now
    run.attempt += 1
    claimed = ClaimedRun(
        run.id,
        run.conversation_id,
        conversation.workspace_id,
        run.user_message_id,
        reply_message_id(run.id),
        run.attempt,
    )
    db.session.commit()
    return claimed


def _without_waiting_for_disk(executor, dialect_name: str) -> None:
    """Commit this transaction without waiting for the WAL flush (PostgreSQL only).

    For bookkeeping that is cheap to lose in a database crash (a heartbeat) and frequent."""
    if dialect_name == "postgresql":
        executor.execute(text("SET LOCAL synchronous_commit = off"))


def touch_heartbeats(engine, run_ids: list[uuid.UUID]) -> None:
    """Proves the runs' worker is alive, in one statement; uses its own connection (called
    from a side thread)."""
    with engine.begin() as connection:
        _without_waiting_for_disk(connection, engine.dialect.name)
        connection.execute(
            update(AgentRun)
            .where(AgentRun.id.in_(run_ids), AgentRun.status == "running")
            .values(heartbeat_at=utcnow())
        )


@dataclass(frozen=True)
class Outcome:
    status: str  # completed | failed | cancelled
    text: str
    meta: dict
    error: dict | None = None
    degraded: bool = False
    first_event_id: str | None = None  # the run's message_start, recorded with the outcome


def finish_run(run_id: uuid.UUID, outcome: Outcome) -> tuple[bool, uuid.UUID | None]:
    """Saves the reply and the final state once. Returns (finished_now, next_run_to_enqueue)."""
    conversation = lock_run_conversation(run_id)
    run = db.session.get(AgentRun, run_id, populate_existing=True) if conversation else None
    if conversation is None or run is None or run.status not in UNFINISHED_STATUSES:
        db.session.rollback()
        return False, None
    if outcome.text:
        reply = append_message(
            conversation,
            "assistant",
            outcome.text,
            message_id=reply_message_id(run.id),
            run_id=run.id,
            meta=outcome.meta,
        )
        run.reply_message_id = reply.id
    if outcome.status == "completed":
        conversation.human_time_saved_minutes += current_app.config["TIME_SAVED_PER_REPLY_MINUTES"]
    run.status, run.finished_at = outcome.status, utcnow()
    run.error, run.degraded = outcome.error, outcome.degraded
    run.first_event_id = run.first_event_id or outcome.first_event_id
    db.session.flush()
    next_run = _next_queued_run(conversation.id)
    db.session.commit()
    forget_cancel_flag(run_id)  # (run's attributes expired with the commit)
    return True, next_run


def forget_cancel_flag(run_id: uuid.UUID) -> None:
    """Deletes a finished run's cancel flag; with Redis away it expires on its own."""
    try:
        redis_client().delete(cancel_key(run_id))
    except redis.RedisError:
        log.warning("cancel flag of run %s not deleted: Redis is unreachable", run_id)


def request_cancel(conversation_id: uuid.UUID, run_id: uuid.UUID) -> tuple[AgentRun, uuid.UUID | None]:
    """Cancels a queued run at once (returning the next run to enqueue), or flags a
    running one for its worker, which stops within a few tokens and saves what it had."""
    lock_conversation(conversation_id)
    run = get_run(conversation_id, run_id)
    db.session.refresh(run)
    if run.status in FINISHED_STATUSES:
        db.session.rollback()
        raise Conflict(f"Run already finished with status '{run.status}'")
    if run.status == "running":
        redis_client().set(cancel_key(run.id), "1", ex=3600)
        db.session.commit()
        return run, None
    run.status, run.finished_at = "cancelled", utcnow()
    db.session.flush()
    next_run = _next_queued_run(conversation_id)
    db.session.commit()
    return run, next_run


def cancel_requested(run_id) -> bool:
    return bool(redis_client().exists(cancel_key(run_id)))


def stale_running_runs() -> list[AgentRun]:
    """Running runs whose worker stopped proving it is alive."""
    cutoff = utcnow() - timedelta(seconds=current_app.config["RUN_STALE_SECONDS"])
    return list(
        db.session.execute(
            select(AgentRun).where(AgentRun.status == "running", AgentRun.heartbeat_at < cutoff)
        ).scalars()
    )


def stranded_queued_runs() -> list[uuid.UUID]:
    """Queued runs that nothing is about to run: their task was lost (e.g. the broker was
    down when they were enqueued) and no earlier run of theirs is unfinished."""
    cutoff = utcnow() - timedelta(seconds=current_app.config["RUN_STALE_SECONDS"])
    stranded = list(
        db.session.execute(
            select(AgentRun.id).where(
                AgentRun.status == "queued", AgentRun.heartbeat_at < cutoff, ~_earlier_run_unfinished()
            )
        ).scalars()
    )
    if stranded:
        db.session.execute(update(AgentRun).where(AgentRun.id.in_(stranded)).values(heartbeat_at=utcnow()))
    db.session.commit()
    return stranded


def oldest_unfinished_run(conversation_id: uuid.UUID) -> AgentRun | None:
    return db.session.execute(
        select(AgentRun)
        .where(AgentRun.conversation_id == conversation_id, AgentRun.status.in_(UNFINISHED_STATUSES))
        .order_by(AgentRun.created_at)
        .limit(1)
    ).scalar_one_or_none()
