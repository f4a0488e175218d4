"""Human handoff: the owner takes a conversation over from the agent and hands it back,
and the agent asks for a person (its tool `request_human`).

A conversation's `agent_mode` decides whether a visitor message starts a run: `auto`, the
agent answers; `paused`, a person from the business answers and visitor messages are only
saved. Every change here happens under the conversation's row lock, the lock a visitor's
post also takes, so a post and a takeover or release are ordered: either the post comes
first and its run is stopped by the takeover, or it sees the conversation paused and
starts no run.
"""

import logging
import uuid
from dataclasses import dataclass, field

import redis
from sqlalchemy import select

from backend.extensions import db, redis_client
from backend.models import AgentRun, Conversation, Workspace
from backend.models.run import UNFINISHED_STATUSES
from backend.models.types import utcnow
from backend.rules.handoff import clean_reason
from backend.services import dispatch, runs
from backend.services.messages import lock_conversation
from backend.services.rows import commit_keeping_state
from backend.streams import RunPublisher, agent_mode_event, cancel_key, publish_event

log = logging.getLogger(__name__)

BY_OWNER, BY_AGENT = "owner", "agent"


@dataclass
class StoppedRuns:
    """The runs a pause stopped: queued ones are cancelled in the pause's transaction,
    running ones are flagged for their worker after it commits."""

    cancelled: list[uuid.UUID] = field(default_factory=list)
    running: list[uuid.UUID] = field(default_factory=list)


def _stop_runs(conversation_id: uuid.UUID, keep: uuid.UUID | None = None) -> StoppedRuns:
    """Cancels the conversation's queued runs and lists its running ones (the caller holds
    the conversation's lock and commits). `keep`: the run asking for the pause."""
    stopped = StoppedRuns()
    unfinished = db.session.execute(
        select(AgentRun).where(
            AgentRun.conversation_id == conversation_id, AgentRun.status.in_(UNFINISHED_STATUSES)
        )
    ).scalars()
    now = utcnow()
    for run in unfinished:
        if run.id == keep:
            continue
        if run.status == "running":
            stopped.running.append(run.id)
        else:
            run.status, run.finished_at = "cancelled", now
            stopped.cancelled.append(run.id)
    return stopped


def _after_stop(conversation_id: uuid.UUID, stopped: StoppedRuns) -> None:
    """After the commit: running runs get their cancel flag (the worker stops within a few
    tokens and saves the partial reply, as with a visitor's cancel), cancelled queued runs
    their `message_end`."""
    for run_id in stopped.running:
        redis_client().set(cancel_key(run_id), "1", ex=3600)
    for run_id in stopped.cancelled:
        publisher = RunPublisher(conversation_id, run_id, runs.reply_message_id(run_id))
        dispatch.close_stream(publisher, runs.Outcome("cancelled", "", {}))


def _announce_mode(conversation_id: uuid.UUID, mode: str, by: str) -> None:
    """Event `agent_mode` on the visitor's stream. The change is committed by then: with
    Redis unreachable the event is lost (a reloading visitor reads the mode over REST)."""
    try:
        publish_event(conversation_id, "agent_mode", agent_mode_event(mode, by))
    except redis.RedisError:
        log.warning(
            "agent_mode event of conversation %s not published: Redis is unreachable", conversation_id
        )


def take_over(conversation_id: uuid.UUID) -> Conversation:
    """Pauses the agent: the run in flight is cancelled (its partial reply kept), queued
    runs are cancelled. Taking over a paused conversation changes nothing, but flags its
    runs again, so a retry after Redis failed mid-way still stops them."""
    conversation = lock_conversation(conversation_id)
    changed = conversation.agent_mode != "paused"
    conversation.agent_mode = "paused"
    stopped = _stop_runs(conversation.id)
    commit_keeping_state()  # the answer is the state written here, not a later writer's
    _after_stop(conversation.id, stopped)
    if changed:
        _announce_mode(conversation.id, "paused", BY_OWNER)
    return conversation


def release(conversation_id: uuid.UUID) -> Conversation:
    """Hands the conversation back to the agent and closes a pending handoff request; the
    next visitor message starts a run whose history holds what the owner wrote."""
    conversation = lock_conversation(conversation_id)
    changed = conversation.agent_mode != "auto"
    conversation.agent_mode = "auto"
    conversation.handoff_requested_at = None
    conversation.handoff_reason = None
    commit_keeping_state()  # the answer is the state written here, not a later writer's
    if changed:
        _announce_mode(conversation.id, "auto", BY_OWNER)
    return conversation


@dataclass(frozen=True)
class HandoffRequest:
    first: bool  # no request was pending: this one is recorded (and notifies the owner)
    paused: bool  # the workspace's handoff_mode is `pause` and this request paused the agent


def request_human(conversation_id: uuid.UUID, run_id: uuid.UUID, reason: str) -> HandoffRequest:
    """Records the agent's request for a person: `handoff_requested_at` and the reason,
    once while a request is pending. With the workspace's handoff_mode `pause` the
    conversation is paused too; the asking run still finishes its reply, later queued
    runs are cancelled."""
    conversation = lock_conversation(conversation_id)
    first = conversation.handoff_requested_at is None
    if first:
        conversation.handoff_requested_at = utcnow()
        conversation.handoff_reason = clean_reason(reason)
    handoff_mode = db.session.execute(
        select(Workspace.handoff_mode).where(Workspace.id == conversation.workspace_id)
    ).scalar_one()
    paused = handoff_mode == "pause" and conversation.agent_mode == "auto"
    stopped = StoppedRuns()
    if paused:
        conversation.agent_mode = "paused"
        stopped = _stop_runs(conversation.id, keep=run_id)
    db.session.commit()
    _after_stop(conversation_id, stopped)
    return HandoffRequest(first=first, paused=paused)
