"""The push outbox and its delivery, in this process, to a fake Expo server over real HTTP:
rows written with their cause (a handoff set through the ORM, a new conversation with the
opt-in) or not at all, the payload per token, retries with backoff after a 5xx or a timeout,
DeviceNotRegistered, the end of the attempts, chunks of 100, the sweep."""

from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from backend.extensions import db
from backend.models import Conversation, PushNotification, PushToken
from backend.models.types import utcnow
from backend.services import push_delivery, push_outbox, push_sweep
from backend.services.messages import append_message, lock_conversation
from tests.api.visitors import start_conversation
from tests.factories import make_conversation, make_workspace
from tests.fake_expo import FakeExpo

TOKENS = ["ExponentPushToken[phone-one]", "ExpoPushToken[phone-two]"]


@pytest.fixture
def expo(app, monkeypatch):
    server = FakeExpo()
    monkeypatch.setitem(app.config, "EXPO_PUSH_URL", server.url)
    monkeypatch.setitem(app.config, "EXPO_PUSH_TIMEOUT_SECONDS", 2.0)
    monkeypatch.setitem(app.config, "PUSH_RETRY_BACKOFF_SECONDS", 0.4)
    yield server
    server.close()


@pytest.fixture
def sent(app, monkeypatch):
    """The tasks sent to Celery: (name, args, countdown)."""
    calls = []

    def send_task(name, args=None, queue=None, countdown=None, **_kwargs):
        calls.append((name, args, countdown))

    monkeypatch.setattr(app.extensions["celery"], "send_task", send_task)
    return calls


def _pushes(calls) -> list:
    return [(args, countdown) for name, args, countdown in calls if name == push_outbox.SEND_TASK]


def _owned(tokens=TOKENS, **fields):
    workspace = make_workspace(**fields)
    for token in tokens:
        db.session.add(PushToken(user_id=workspace.owner_id, token=token))
    db.session.commit()
    return workspace


def _rows() -> list[PushNotification]:
    db.session.expire_all()
    return list(db.session.execute(select(PushNotification).order_by(PushNotification.created_at)).scalars())


def _tokens() -> list[str]:
    db.session.expire_all()
    return sorted(db.session.execute(select(PushToken.token)).scalars())


def _hand_off(conversation: Conversation, reason="Wants to move the booking") -> None:
    conversation.handoff_requested_at = utcnow()
    conversation.handoff_reason = reason
    db.session.commit()


def _due_now(row_id) -> None:
    """Skips the wait before a retry (the test does not sleep through the backoff)."""
    row = db.session.get(PushNotification, row_id)
    row.next_attempt_at = utcnow()
    db.session.commit()


def test_a_handoff_set_through_the_orm_is_pushed_to_every_token(expo, sent):
    workspace = _owned()
    conversation = make_conversation(workspace, visitor_name="Ana")
    assert _rows() == [] and _pushes(sent) == []
    _hand_off(conversation)
    [row] = _rows()
    assert (row.type, row.status, row.user_id) == ("handoff.requested", "pending", workspace.owner_id)
    assert _pushes(sent) == [([str(row.id)], None)]

    push_delivery.attempt(str(row.id))
    [request] = expo.requests
    assert sorted(request.tokens) == sorted(TOKENS)
    data = {
        "type": "handoff.requested",
        "conversation_id": str(conversation.id),
        "workspace_id": str(workspace.id),
    }
    for message in request.messages:
        assert message["title"] == "Ana asked for a person"
        assert message["body"] == "Wants to move the booking"
        assert message["data"] == data
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"
    assert "gzip" in request.headers["Accept-Encoding"]
    [row] = _rows()
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    assert sorted(row.done_tokens) == sorted(TOKENS)
    push_delivery.attempt(str(row.id))  # a duplicate task sends nothing
    assert len(expo.requests) == 1


def test_only_a_handoff_that_starts_pushes(sent):
    workspace = _owned()
    conversation = make_conversation(workspace)
    conversation.last_message_at = utcnow()
    db.session.commit()
    assert _rows() == []
    _hand_off(conversation)
    _hand_off(conversation, reason="again, while still requested")
    assert len(_rows()) == 1
    # Released, then requested again: a new handoff.
    conversation.handoff_requested_at = None
    db.session.commit()
    _hand_off(conversation)
    assert len(_rows()) == 2


def test_a_handoff_set_on_an_expired_object_reads_the_value_before_it(sent):
    conversation = make_conversation(_owned())
    db.session.expire(conversation)
    _hand_off(conversation)
    assert len(_rows()) == 1
    db.session.expire(conversation)
    _hand_off(conversation, reason="set again without loading it")
    assert len(_rows()) == 1


def test_a_handoff_set_by_an_update_statement_is_pushed_once(sent):
    workspace = _owned()
    conversation, other = make_conversation(workspace, visitor_name="Cy"), make_conversation(workspace)
    statement = (
        update(Conversation)
        .where(Conversation.id == conversation.id)
        .values(handoff_requested_at=utcnow(), handoff_reason="Asked for the manager")
    )
    db.session.execute(statement)
    db.session.commit()
    [row] = _rows()
    assert (row.title, row.body) == ("Cy asked for a person", "Asked for the manager")
    assert row.conversation_id == conversation.id and _pushes(sent) == [([str(row.id)], None)]
    db.session.execute(statement)  # already requested: nothing new
    db.session.execute(update(Conversation).values(tags=["x"]))
    db.session.execute(
        update(Conversation).where(Conversation.id == other.id).values(handoff_requested_at=None)
    )
    db.session.commit()
    assert len(_rows()) == 1


def test_a_rolled_back_handoff_leaves_no_row_and_sends_nothing(sent):
    conversation = make_conversation(_owned())
    conversation.handoff_requested_at = utcnow()
    db.session.flush()
    db.session.rollback()
    assert _rows() == [] and _pushes(sent) == []


def test_an_owner_without_a_phone_gets_no_row(sent):
    conversation = make_conversation(_owned(tokens=[]))
    _hand_off(conversation)
    assert _rows() == [] and _pushes(sent) == []


def test_a_new_conversation_is_pushed_only_with_the_opt_in(client, expo, sent):
    quiet = _owned(tokens=["ExpoPushToken[quiet]"])
    make_conversation(quiet)
    start_conversation(client, quiet.handle, visitor_name="Bo")
    assert _rows() == []

    loud = _owned(push_on_new_conversation=True)
    conversation_id, visitor_token = start_conversation(client, loud.handle, visitor_name="Bo")
    [row] = _rows()
    assert row.type == "conversation.created" and str(row.conversation_id) == conversation_id
    push_delivery.attempt(str(row.id))
    [request] = expo.requests
    assert {m["title"] for m in request.messages} == {"New conversation"}
    assert {m["body"] for m in request.messages} == {"Bo started a conversation."}
    assert visitor_token not in str(request.messages)
    assert request.messages[0]["data"] == {
        "type": "conversation.created", "conversation_id": conversation_id, "workspace_id": str(loud.id),
    }  # fmt: skip


def test_a_reply_in_a_conversation_that_triggers_nothing_costs_no_push_query(sent):
    conversation = make_conversation(_owned())
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        append_message(lock_conversation(conversation.id), "assistant", "Sure, Friday works.")
        db.session.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert statements and not any("push_" in s for s in statements), statements
    assert _rows() == []


def test_a_5xx_is_retried_with_backoff_then_sent(expo, sent):
    expo.statuses[:] = [500, 503]
    conversation = make_conversation(_owned())
    _hand_off(conversation)
    [row] = _rows()
    sent.clear()

    push_delivery.attempt(str(row.id))
    [row] = _rows()
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error == "INTERNAL_SERVER_ERROR: An unknown error occurred."
    [(args, first)] = _pushes(sent)
    assert args == [str(row.id)] and 0.32 <= first <= 0.48  # 0.4 s ± 20 %
    waited = (row.next_attempt_at - utcnow()).total_seconds()
    assert 0 < waited <= 0.48

    push_delivery.attempt(str(row.id))  # due within the second of slack
    second = _pushes(sent)[1][1]
    assert 0.64 <= second <= 0.96  # doubled
    push_delivery.attempt(str(row.id))
    [row] = _rows()
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
    assert len(expo.requests) == 3
    assert expo.requests[0].messages == expo.requests[2].messages
    assert len(_pushes(sent)) == 2


def test_a_timeout_is_retried(app, expo, sent, monkeypatch):
    monkeypatch.setitem(app.config, "EXPO_PUSH_TIMEOUT_SECONDS", 0.5)
    expo.delays[:] = [3]
    _hand_off(make_conversation(_owned()))
    [row] = _rows()
    push_delivery.attempt(str(row.id))
    [row] = _rows()
    assert (row.status, row.last_error) == ("pending", "timed out after 0.5 s")
    _due_now(row.id)
    push_delivery.attempt(str(row.id))
    [row] = _rows()
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(expo.requests) == 2


def test_device_not_registered_deletes_just_that_token(expo, sent):
    gone = "ExponentPushToken[gone]"
    expo.unregistered.add(gone)
    workspace = _owned(tokens=[*TOKENS, gone])
    other = _owned(tokens=["ExpoPushToken[someone-else]"])
    _hand_off(make_conversation(workspace))
    [row] = _rows()
    push_delivery.attempt(str(row.id))
    assert _tokens() == sorted([*TOKENS, "ExpoPushToken[someone-else]"])
    [row] = _rows()
    assert (row.status, row.last_error) == ("sent", "DeviceNotRegistered")
    assert other is not None


def test_every_token_unregistered_fails_the_notification(expo, sent):
    expo.unregistered.update(TOKENS)
    _hand_off(make_conversation(_owned()))
    [row] = _rows()
    push_delivery.attempt(str(row.id))
    assert _tokens() == [] and _rows()[0].status == "failed"


def test_the_attempts_run_out(app, expo, sent, monkeypatch):
    monkeypatch.setitem(app.config, "PUSH_MAX_ATTEMPTS", 2)
    expo.statuses[:] = [502, 502, 502]
    _hand_off(make_conversation(_owned()))
    [row] = _rows()
    sent.clear()
    push_delivery.attempt(str(row.id))
    _due_now(row.id)
    push_delivery.attempt(str(row.id))
    [row] = _rows()
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 2, None)
    assert len(_pushes(sent)) == 1 and len(expo.requests) == 2


def test_a_4xx_fails_without_a_retry(expo, sent):
    expo.statuses[:] = [400]
    _hand_off(make_conversation(_owned()))
    [row] = _rows()
    sent.clear()
    push_delivery.attempt(str(row.id))
    assert _rows()[0].status == "failed" and _pushes(sent) == []


def test_many_tokens_go_in_requests_of_100(expo, sent):
    tokens = [f"ExpoPushToken[device-{i:03d}]" for i in range(150)]
    _hand_off(make_conversation(_owned(tokens=tokens)))
    push_delivery.attempt(str(_rows()[0].id))
    assert sorted(len(r.messages) for r in expo.requests) == [50, 100]
    assert sorted(t for r in expo.requests for t in r.tokens) == sorted(tokens)


def test_a_retry_skips_the_tokens_already_done(expo, sent):
    expo.unregistered.add(TOKENS[1])
    _hand_off(make_conversation(_owned()))
    [row] = _rows()
    row.done_tokens = [TOKENS[0]]  # as if an earlier attempt's first request got through
    db.session.commit()
    push_delivery.attempt(str(row.id))
    assert [r.tokens for r in expo.requests] == [[TOKENS[1]]]


def test_a_claimed_notification_is_not_claimed_again(sent):
    _hand_off(make_conversation(_owned()))
    [row] = _rows()
    assert push_delivery.claim(row.id) is not None
    assert push_delivery.claim(row.id) is None


def test_the_sweep_sends_a_notification_whose_task_was_never_sent(app, expo, sent):
    workspace = _owned()
    conversation = make_conversation(workspace)
    lease = app.config["PUSH_LEASE_SECONDS"]
    # As if the process died right after the commit: the row, and no task.
    old = PushNotification(
        user_id=workspace.owner_id,
        workspace_id=workspace.id,
        conversation_id=conversation.id,
        type="handoff.requested",
        title="A visitor asked for a person",
        body="Lost task",
        data={"type": "handoff.requested"},
        status="pending",
        attempts=0,
        next_attempt_at=utcnow() - timedelta(seconds=lease + 1),
        done_tokens=[],
    )
    fresh = PushNotification(
        **{
            c: getattr(old, c)
            for c in ("user_id", "workspace_id", "conversation_id", "type", "title", "body")
        },
        data={},
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
        done_tokens=[],
    )
    db.session.add_all([old, fresh])
    db.session.commit()
    sent.clear()
    assert push_sweep.sweep_once() == 1
    assert _pushes(sent) == [([str(old.id)], None)]
    push_delivery.attempt(str(old.id))
    assert [m["body"] for m in expo.requests[0].messages] == ["Lost task", "Lost task"]
    db.session.expire_all()
    assert db.session.get(PushNotification, old.id).status == "sent"
    assert push_sweep.sweep_once() == 0
