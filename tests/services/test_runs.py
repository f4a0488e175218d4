"""The run lifecycle (backend/services/runs.py) on PostgreSQL: claiming in order and once,
finishing once, handing over to the next run, and finding runs that need recovery."""

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from backend.errors import Conflict, NotFound
from backend.extensions import db, redis_client
from backend.models import AgentRun, Conversation, ConversationMessage, Workspace
from backend.models.types import utcnow
from backend.services import runs
from backend.streams import cancel_key
from tests.factories import assistant_replies, make_conversation, make_message, make_workspace, reload_run
from tests.helpers import count_statements


def new_conversation() -> Conversation:
    # One workspace per test (its owner's password hash is what costs time).
    workspace = db.session.execute(select(Workspace).limit(1)).scalar_one_or_none() or make_workspace()
    return make_conversation(workspace, channel="web_public")


def queue_run(conversation: Conversation, content: str = "Hi") -> AgentRun:
    message = make_message(conversation, "user", content)
    run = runs.create_run(conversation, message)
    db.session.commit()
    return run


def completed(text="Sure!", **meta) -> runs.Outcome:
    return runs.Outcome("completed", text, {"model": "m", **meta})


reload = reload_run


assistant_messages = assistant_replies


def test_reply_message_id_is_deterministic():
    run_id = uuid.uuid4()
    assert runs.reply_message_id(run_id) == runs.reply_message_id(run_id)
    assert runs.reply_message_id(run_id) == runs.reply_message_id(uuid.UUID(str(run_id)))
    assert runs.reply_message_id(run_id) != runs.reply_message_id(uuid.uuid4())
    assert runs.reply_message_id(run_id) != run_id
    assert runs.reply_message_id(run_id).version == 5


def test_create_run_is_queued_at_its_message_time():
    conversation = new_conversation()
    run = queue_run(conversation)
    message = db.session.get(ConversationMessage, run.user_message_id)
    assert run.status == "queued" and run.attempt == 0
    assert run.created_at == message.timestamp
    assert run.started_at is None and run.finished_at is None and run.first_event_id is None


# --- claiming ---------------------------------------------------------------------------------


def test_claim_marks_a_queued_run_running():
    conversation = new_conversation()
    run = queue_run(conversation)
    claim = runs.claim_run(run.id)
    assert claim is not None
    assert claim.run_id == run.id
    assert claim.conversation_id == conversation.id
    assert claim.workspace_id == conversation.workspace_id
    assert claim.user_message_id == run.user_message_id
    assert claim.reply_message_id == runs.reply_message_id(run.id)
    assert claim.attempt == 1
    stored = reload(run.id)
    assert stored.status == "running" and stored.started_at is not None and stored.heartbeat_at is not None


@pytest.mark.parametrize("status", ["running", "completed", "failed", "cancelled"])
def test_claim_is_a_no_op_unless_queued(status):
    run = queue_run(new_conversation())
    run.status = status
    db.session.commit()
    assert runs.claim_run(run.id) is None
    stored = reload(run.id)
    assert stored.status == status and stored.attempt == 0


def test_claim_of_an_unknown_run_is_a_no_op():
    assert runs.claim_run(uuid.uuid4()) is None


def test_second_claim_is_a_no_op():
    run = queue_run(new_conversation())
    assert runs.claim_run(run.id) is not None
    assert runs.claim_run(run.id) is None  # e.g. Celery delivered the task twice
    assert reload(run.id).attempt == 1


def test_claim_waits_for_the_earlier_run_of_the_conversation():
    conversation = new_conversation()
    first = queue_run(conversation, "one")
    second = queue_run(conversation, "two")
    other = queue_run(new_conversation(), "elsewhere")

    assert runs.claim_run(second.id) is None  # the earlier run has not even started
    assert reload(second.id).status == "queued"
    assert runs.claim_run(other.id) is not None  # other conversations are not held up

    assert runs.claim_run(first.id) is not None
    assert runs.claim_run(second.id) is None  # ...nor finished
    finished, next_run = runs.finish_run(first.id, completed())
    assert finished and next_run == second.id
    assert runs.claim_run(second.id) is not None


def test_concurrent_claims_claim_once(app):
    run_id = queue_run(new_conversation()).id  # threads must not touch this session's objects
    barrier = threading.Barrier(6)
    claims = []

    def claim():
        with app.app_context():
            barrier.wait()
            claims.append(runs.claim_run(run_id))
            db.session.remove()

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(claims) == 6
    assert sum(c is not None for c in claims) == 1
    assert reload(run_id).attempt == 1


# --- finishing --------------------------------------------------------------------------------


def test_finish_saves_the_reply_once(app):
    conversation = new_conversation()
    run = queue_run(conversation)
    claim = runs.claim_run(run.id)
    outcome = completed("Here you go", usage={"total_tokens": 5})
    assert runs.finish_run(claim.run_id, outcome) == (True, None)
    assert runs.finish_run(claim.run_id, outcome) == (False, None)
    assert runs.finish_run(run.id, runs.Outcome("failed", "other text", {})) == (False, None)

    [reply] = assistant_messages(conversation.id)
    assert reply.id == runs.reply_message_id(run.id)
    assert reply.content == "Here you go" and reply.run_id == run.id
    assert reply.meta == {"model": "m", "usage": {"total_tokens": 5}}
    stored = reload(run.id)
    assert stored.status == "completed" and stored.reply_message_id == reply.id
    assert stored.finished_at is not None and stored.error is None and stored.degraded is False
    user_message = db.session.get(ConversationMessage, run.user_message_id)
    assert reply.timestamp > user_message.timestamp
    conversation = db.session.get(Conversation, conversation.id)
    assert conversation.last_message_at == reply.timestamp
    assert conversation.human_time_saved_minutes == app.config["TIME_SAVED_PER_REPLY_MINUTES"]


def test_concurrent_finishes_save_one_reply(app):
    conversation = new_conversation()
    conversation_id, run_id = conversation.id, queue_run(conversation).id
    runs.claim_run(run_id)
    barrier = threading.Barrier(5)
    results = []

    def finish(i):
        with app.app_context():
            barrier.wait()
            results.append(runs.finish_run(run_id, completed(f"reply {i}"))[0])
            db.session.remove()

    threads = [threading.Thread(target=finish, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [False] * 4 + [True]
    assert len(assistant_messages(conversation_id)) == 1


def test_failed_and_cancelled_outcomes(app):
    conversation = new_conversation()
    failed_run = queue_run(conversation, "one")
    runs.claim_run(failed_run.id)
    error = {"code": "llm_connection", "message": "broke"}
    runs.finish_run(failed_run.id, runs.Outcome("failed", "partial", {"model": "m"}, error))
    cancelled_run = queue_run(conversation, "two")
    runs.claim_run(cancelled_run.id)
    runs.finish_run(cancelled_run.id, runs.Outcome("cancelled", "", {"model": "m"}))

    stored = reload(failed_run.id)
    assert stored.status == "failed" and stored.error == error
    stored_cancelled = reload(cancelled_run.id)
    assert stored_cancelled.status == "cancelled" and stored_cancelled.reply_message_id is None
    # The partial text is kept; an empty one saves nothing; neither counts as time saved.
    assert [m.content for m in assistant_messages(conversation.id)] == ["partial"]
    assert db.session.get(Conversation, conversation.id).human_time_saved_minutes == 0


def test_degraded_completion_is_recorded(app):
    conversation = new_conversation()
    run = queue_run(conversation)
    runs.claim_run(run.id)
    error = {"code": "rate_limited", "message": "slow down"}
    runs.finish_run(run.id, runs.Outcome("completed", "Book here", {"degraded": True}, error, degraded=True))
    stored = reload(run.id)
    assert stored.status == "completed" and stored.degraded is True and stored.error == error
    assert db.session.get(Conversation, conversation.id).human_time_saved_minutes == 2


def test_finish_returns_the_next_queued_run_in_order():
    conversation = new_conversation()
    first = queue_run(conversation, "one")
    second = queue_run(conversation, "two")
    third = queue_run(conversation, "three")
    queue_run(new_conversation(), "elsewhere")
    runs.claim_run(first.id)
    assert runs.finish_run(first.id, completed()) == (True, second.id)
    runs.claim_run(second.id)
    assert runs.finish_run(second.id, completed()) == (True, third.id)
    runs.claim_run(third.id)
    assert runs.finish_run(third.id, completed()) == (True, None)


def test_finish_clears_the_cancel_flag():
    run = queue_run(new_conversation())
    runs.claim_run(run.id)
    redis_client().set(cancel_key(run.id), "1")
    assert runs.cancel_requested(run.id)
    runs.finish_run(run.id, runs.Outcome("cancelled", "par", {}))
    assert not runs.cancel_requested(run.id)


def test_finish_of_an_unknown_run():
    assert runs.finish_run(uuid.uuid4(), completed()) == (False, None)


# --- cancelling -------------------------------------------------------------------------------


def test_request_cancel():
    conversation = new_conversation()
    queued = queue_run(conversation, "one")
    later = queue_run(conversation, "two")
    run, next_run = runs.request_cancel(conversation.id, queued.id)
    assert run.status == "cancelled" and run.finished_at is not None
    assert next_run == later.id
    assert not runs.cancel_requested(queued.id)

    runs.claim_run(later.id)
    run, next_run = runs.request_cancel(conversation.id, later.id)
    assert run.status == "running" and next_run is None
    assert runs.cancel_requested(later.id)
    assert 0 < redis_client().ttl(cancel_key(later.id)) <= 3600

    runs.finish_run(later.id, runs.Outcome("cancelled", "", {}))
    with pytest.raises(Conflict):
        runs.request_cancel(conversation.id, later.id)
    with pytest.raises(NotFound):
        runs.request_cancel(new_conversation().id, later.id)


def test_get_run_checks_the_conversation():
    conversation = new_conversation()
    run = queue_run(conversation)
    assert runs.get_run(conversation.id, run.id).id == run.id
    with pytest.raises(NotFound, match="Run not found"):
        runs.get_run(new_conversation().id, run.id)
    with pytest.raises(NotFound, match="Run not found"):
        runs.get_run(conversation.id, uuid.uuid4())


def test_oldest_unfinished_run():
    conversation = new_conversation()
    assert runs.oldest_unfinished_run(conversation.id) is None
    first = queue_run(conversation, "one")
    second = queue_run(conversation, "two")
    assert runs.oldest_unfinished_run(conversation.id).id == first.id
    runs.claim_run(first.id)
    assert runs.oldest_unfinished_run(conversation.id).id == first.id
    runs.finish_run(first.id, completed())
    assert runs.oldest_unfinished_run(conversation.id).id == second.id
    runs.request_cancel(conversation.id, second.id)
    assert runs.oldest_unfinished_run(conversation.id) is None


def test_a_claim_locks_then_reads_the_run_with_its_earlier_runs_check_then_writes():
    run_id = queue_run(new_conversation()).id
    with count_statements() as statements:
        assert runs.claim_run(run_id) is not None
    assert [statement.split()[0] for statement in statements] == ["SELECT", "SELECT", "UPDATE"], statements
    assert "FOR UPDATE" in statements[0] and "EXISTS" in statements[1]


def test_the_first_event_id_is_saved_with_the_outcome():
    """The run's message_start id is recorded in the finishing transaction, not in one of its own."""
    run = queue_run(new_conversation())
    runs.claim_run(run.id)
    assert reload(run.id).first_event_id is None
    outcome = runs.Outcome("completed", "Sure!", {"model": "m"}, first_event_id="1700000000000-3")
    assert runs.finish_run(run.id, outcome)[0] is True
    assert reload(run.id).first_event_id == "1700000000000-3"


def test_touch_heartbeats_only_for_running_runs():
    run, other = queue_run(new_conversation()), queue_run(new_conversation())
    old = utcnow() - timedelta(minutes=10)
    run.heartbeat_at = other.heartbeat_at = old
    db.session.commit()
    runs.touch_heartbeats(db.engine, [run.id, other.id])
    assert reload(run.id).heartbeat_at == old  # queued: untouched
    for claimed in (run, other):
        runs.claim_run(claimed.id)
        stored = reload(claimed.id)
        stored.heartbeat_at = old
    db.session.commit()
    runs.touch_heartbeats(db.engine, [run.id, other.id])
    assert reload(run.id).heartbeat_at > old + timedelta(minutes=9)
    assert reload(other.id).heartbeat_at > old + timedelta(minutes=9)


# --- recovery queries ------------------------------------------------------------------------


def _age(run_id, seconds: float) -> None:
    run = db.session.get(AgentRun, run_id)
    run.heartbeat_at = utcnow() - timedelta(seconds=seconds)
    db.session.commit()


def test_stale_running_runs(app):
    stale_after = app.config["RUN_STALE_SECONDS"]
    stale = queue_run(new_conversation())
    fresh = queue_run(new_conversation())
    queued_old = queue_run(new_conversation())
    done = queue_run(new_conversation())
    for run in (stale, fresh, done):
        runs.claim_run(run.id)
    runs.finish_run(done.id, completed())
    _age(stale.id, stale_after + 5)
    _age(fresh.id, stale_after - 5)
    _age(queued_old.id, stale_after + 5)
    _age(done.id, stale_after + 5)
    assert [r.id for r in runs.stale_running_runs()] == [stale.id]


def test_stranded_queued_runs(app):
    stale_after = app.config["RUN_STALE_SECONDS"]
    conversation = new_conversation()
    stranded = queue_run(conversation, "one")
    behind = queue_run(conversation, "two")  # waits for `stranded`, not stranded itself
    fresh = queue_run(new_conversation())
    lonely = queue_run(new_conversation())
    running = queue_run(new_conversation())
    runs.claim_run(running.id)
    for run in (stranded, behind, lonely, running):
        _age(run.id, stale_after + 5)
    _age(fresh.id, 1)

    found = runs.stranded_queued_runs()
    assert sorted(found, key=str) == sorted([stranded.id, lonely.id], key=str)
    # Their heartbeat was refreshed: the next sweep does not resend them at once.
    assert runs.stranded_queued_runs() == []
    assert reload(stranded.id).heartbeat_at > utcnow() - timedelta(seconds=5)
    assert reload(behind.id).status == "queued"


def test_stranded_after_the_earlier_run_finished(app):
    stale_after = app.config["RUN_STALE_SECONDS"]
    conversation = new_conversation()
    first = queue_run(conversation, "one")
    second = queue_run(conversation, "two")
    runs.claim_run(first.id)
    _age(second.id, stale_after + 5)
    assert runs.stranded_queued_runs() == []
    runs.finish_run(first.id, completed())
    _age(second.id, stale_after + 5)
    assert runs.stranded_queued_runs() == [second.id]
