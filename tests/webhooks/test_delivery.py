"""The outbox and the delivery of webhooks, in this process, to a real local receiver:
events committed (or rolled back) with their cause, fan-out, signed attempts, retries with
the same event id, the schedule's end, the auto-disable, SSRF refusal, the sweep."""

import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from backend.extensions import db
from backend.models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription
from backend.models.types import utcnow
from backend.rules.webhooks import EVENT_TYPES
from backend.services import dispatch, handoff, runs, webhook_delivery, webhook_outbox, webhook_sweep
from backend.services.messages import append_message, lock_conversation
from tests.api.visitors import post_message, start_conversation
from tests.factories import (
    make_connector,
    make_conversation,
    make_user,
    make_webhook,
    make_webhook_delivery,
    make_workspace,
)
from tests.webhooks.receiver import Receiver, signature_is_valid


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def local(app, monkeypatch):
    """Deliveries may go to this machine over http (as the tests' receiver needs)."""
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", True)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_HTTP", True)
    monkeypatch.setitem(app.config, "WEBHOOK_RETRY_SCHEDULE", "0,0")


@pytest.fixture
def sent(app, monkeypatch):
    """The tasks sent to the `webhooks` queue: (name, args, countdown)."""
    calls = []
    celery = app.extensions["celery"]
    monkeypatch.setattr(
        celery, "send_task", lambda name, args, queue, countdown=None: calls.append((name, args, countdown))
    )
    return calls


def _events() -> list[WebhookEvent]:
    db.session.expire_all()
    return list(db.session.execute(select(WebhookEvent).order_by(WebhookEvent.created_at)).scalars())


def _deliver_all() -> None:
    for delivery_id in webhook_delivery.fan_out([str(e.id) for e in _events()]):
        webhook_delivery.attempt(str(delivery_id))


def test_the_public_chat_writes_events_and_sends_one_fan_out_per_commit(client, sent):
    workspace = make_workspace()
    make_webhook(workspace)
    conversation_id, token = start_conversation(client, workspace.handle, visitor_name="Ana")
    assert post_message(client, conversation_id, token, "Is Friday free?").status_code == 201
    events = _events()
    assert [e.type for e in events] == ["conversation.created", "message.created"]
    assert events[0].data["conversation_id"] == conversation_id and events[0].data["visitor_name"] == "Ana"
    assert events[1].data["content"] == "Is Friday free?" and events[1].data["role"] == "user"
    fan_outs = [args for name, args, _ in sent if name == webhook_outbox.FAN_OUT_TASK]
    assert fan_outs == [[[str(events[0].id)]], [[str(events[1].id)]]]


def test_a_rolled_back_change_leaves_no_event(sent):
    workspace = make_workspace()
    make_webhook(workspace)
    conversation = make_conversation(workspace)
    sent.clear()
    append_message(lock_conversation(conversation.id), "owner", "never saved")
    db.session.flush()
    db.session.rollback()
    assert [e.type for e in _events()] == ["conversation.created"] and sent == []


def test_only_subscribed_types_and_active_subscriptions_count(app):
    workspace = make_workspace()
    make_webhook(workspace, events=["reply.completed"])
    make_webhook(workspace, events=["message.created"], is_active=False)
    make_message_in(make_conversation(workspace))
    assert _events() == []


def make_message_in(conversation, role="owner", content="Hi", **fields):
    message = append_message(lock_conversation(conversation.id), role, content, **fields)
    db.session.commit()
    return message


def test_no_subscription_costs_no_query_once_cached(app):
    workspace = make_workspace()
    conversation = make_conversation(workspace)
    make_message_in(conversation)  # warms the cache
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        make_message_in(conversation)
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert not any("webhook" in s for s in statements), statements
    assert _events() == []


def test_a_new_subscription_is_heard_at_once_in_this_process(client, sent):
    workspace = make_workspace()
    conversation = make_conversation(workspace)
    make_message_in(conversation)  # caches "no subscriptions"
    from tests.factories import auth_headers

    body = {"url": "https://hooks.example.com/in", "events": ["message.created"]}
    client.post(
        f"/api/v1/workspaces/{workspace.id}/webhooks", json=body, headers=auth_headers(workspace.owner)
    )
    make_message_in(conversation)
    assert [e.type for e in _events()] == ["message.created"]


def _finish(conversation, outcome_text="Book here", tools=("get_booking_link",)):
    user_message = make_message_in(conversation, role="user", content="Can I book?")
    run = runs.create_run(lock_conversation(conversation.id), user_message)
    db.session.commit()
    assert runs.claim_run(run.id) is not None
    outcome = runs.Outcome("completed", outcome_text, {"tool_calls": list(tools)})
    dispatch.finish(run.id, conversation.id, outcome)
    return run


def test_a_finished_run_raises_message_reply_and_booking_link_events(sent):
    workspace = make_workspace()
    make_webhook(workspace, events=["message.created", "reply.completed", "booking_link.shared"])
    make_connector(workspace, is_active=True, config={"link": "https://calendly.com/jane/intro"})
    conversation = make_conversation(workspace)
    run = _finish(conversation)
    by_type = {e.type: e.data for e in _events()}
    assert set(by_type) == {"message.created", "reply.completed", "booking_link.shared"}
    reply_id = str(runs.reply_message_id(run.id))
    assert by_type["reply.completed"] == {
        "conversation_id": str(conversation.id),
        "run_id": str(run.id),
        "message_id": reply_id,
        "content": "Book here",
        "degraded": False,
    }
    assert by_type["booking_link.shared"]["link"] == "https://calendly.com/jane/intro"
    assert by_type["booking_link.shared"]["type"] == "calendly"
    assert by_type["booking_link.shared"]["message_id"] == reply_id


def test_a_handoff_request_raises_handoff_requested_once(sent):
    workspace = make_workspace()
    make_webhook(workspace, events=["handoff.requested"])
    conversation = make_conversation(workspace)
    run_id = uuid.uuid4()
    assert handoff.request_human(conversation.id, run_id, "Wants a refund").first
    assert not handoff.request_human(conversation.id, run_id, "Still waiting").first
    [event] = _events()
    assert event.type == "handoff.requested" and event.workspace_id == workspace.id
    assert event.data["conversation_id"] == str(conversation.id)
    assert event.data["reason"] == "Wants a refund" and event.data["requested_at"]
    # Released, then asked again: a new request, a new event.
    handoff.release(conversation.id)
    handoff.request_human(conversation.id, run_id, "Again")
    assert [e.data["reason"] for e in _events()] == ["Wants a refund", "Again"]


def test_no_booking_event_without_a_usable_link_or_the_tool(sent):
    workspace = make_workspace()
    make_webhook(workspace, events=["booking_link.shared", "reply.completed"])
    _finish(make_conversation(workspace))  # no connector
    make_connector(workspace, is_active=True)
    _finish(make_conversation(workspace), tools=())
    assert [e.type for e in _events()] == ["reply.completed", "reply.completed"]


def test_delivery_is_signed_and_shaped_as_documented(local, receiver, sent, caplog):
    workspace = make_workspace()
    hook = make_webhook(workspace, url=receiver.url, events=["message.created"])
    other = make_webhook(workspace, url=receiver.url, events=["reply.completed"])
    make_message_in(make_conversation(workspace), content="Héllo")
    _deliver_all()
    [got] = receiver.wait_for(1)
    assert signature_is_valid(hook.secret, got) and not signature_is_valid(other.secret, got)
    [stored] = [e for e in _events() if e.type == "message.created"]
    assert got.headers["X-Webhook-Id"] == str(stored.id)
    assert abs(int(got.headers["X-Webhook-Timestamp"]) - time.time()) < 10
    assert got.headers["Content-Type"] == "application/json"
    body = got.json
    assert set(body) == {"id", "type", "created_at", "workspace_id", "data"}
    assert (body["id"], body["type"], body["workspace_id"]) == (
        str(stored.id),
        "message.created",
        str(workspace.id),
    )
    assert body["data"]["content"] == "Héllo"
    delivery = db.session.execute(select(WebhookDelivery)).scalar_one()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("delivered", 1, None)
    # Neither the endpoint's URL (its query may hold a token) nor the secret is logged.
    assert receiver.url not in caplog.text and hook.secret not in caplog.text
    assert "attempt 1: 200" in caplog.text


def test_a_failure_is_retried_with_the_same_id_then_delivered(local, receiver, sent):
    receiver.statuses[:] = [503, 302]  # a redirect is not followed: it is a failure
    hook = make_webhook(make_workspace(), url=receiver.url)
    delivery = make_webhook_delivery(hook)
    for _ in range(3):
        webhook_delivery.attempt(str(delivery.id))
    got = receiver.wait_for(3)
    assert len({r.headers["X-Webhook-Id"] for r in got}) == 1
    assert all(signature_is_valid(hook.secret, r) for r in got)
    attempts = db.session.execute(select(WebhookAttempt).order_by(WebhookAttempt.attempt)).scalars().all()
    assert [(a.attempt, a.status_code, a.error) for a in attempts] == [
        (1, 503, "HTTP 503"),
        (2, 302, "HTTP 302"),
        (3, 200, None),
    ]
    retries = [countdown for name, _args, countdown in sent if name == webhook_outbox.DELIVER_TASK]
    assert len(retries) == 2 and all(c is not None and c >= 0 for c in retries)
    db.session.expire_all()
    assert db.session.get(WebhookSubscription, hook.id).consecutive_failures == 0


def test_the_schedule_ends_in_failed(local, receiver, sent):
    receiver.statuses[:] = [500, 500, 500, 500]
    delivery = make_webhook_delivery(make_webhook(make_workspace(), url=receiver.url))
    for _ in range(4):
        webhook_delivery.attempt(str(delivery.id))
    assert len(receiver.wait_for(3)) == 3  # the first attempt and the schedule's two retries
    db.session.expire_all()
    row = db.session.get(WebhookDelivery, delivery.id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 3, None)


def test_a_slow_receiver_times_out_and_is_retried(local, receiver, app, monkeypatch, sent):
    monkeypatch.setitem(app.config, "WEBHOOK_TIMEOUT_SECONDS", 0.3)
    receiver.delay = 1.0
    delivery = make_webhook_delivery(make_webhook(make_workspace(), url=receiver.url))
    webhook_delivery.attempt(str(delivery.id))
    attempt = db.session.execute(select(WebhookAttempt)).scalar_one()
    assert attempt.error == "timed out after 0.3 s" and attempt.status_code is None
    assert attempt.duration_ms < 1000 and attempt.next_retry_at is not None


def test_loopback_is_refused_without_the_opt_out(app, receiver, monkeypatch, sent):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_HTTP", True)
    delivery = make_webhook_delivery(make_webhook(make_workspace(), url=receiver.url))
    webhook_delivery.attempt(str(delivery.id))
    attempt = db.session.execute(select(WebhookAttempt)).scalar_one()
    assert "non-public address (127.0.0.1): refused" in attempt.error and attempt.status_code is None
    assert receiver.received == []


def test_an_unresolvable_host_is_a_failed_attempt(local, sent):
    delivery = make_webhook_delivery(make_webhook(make_workspace(), url="http://no-such-host.invalid/x"))
    webhook_delivery.attempt(str(delivery.id))
    assert (
        "cannot resolve no-such-host.invalid" in db.session.execute(select(WebhookAttempt.error)).scalar_one()
    )


def test_repeated_failures_switch_the_subscription_off_and_email_the_owner(
    local, receiver, app, monkeypatch, sent
):
    monkeypatch.setitem(app.config, "WEBHOOK_DISABLE_AFTER_FAILURES", 3)
    emails = []
    monkeypatch.setattr(webhook_delivery.email, "send_email", lambda *args: emails.append(args))
    receiver.statuses[:] = [500] * 10
    owner = make_user(full_name="Jane")
    hook = make_webhook(make_workspace(owner), url=receiver.url)
    first, second, third = (make_webhook_delivery(hook) for _ in range(3))
    webhook_delivery.attempt(str(first.id))
    webhook_delivery.attempt(str(first.id))
    webhook_delivery.attempt(str(second.id))
    db.session.expire_all()
    row = db.session.get(WebhookSubscription, hook.id)
    assert (row.is_active, row.consecutive_failures) == (False, 3)
    assert row.disabled_reason == "3 consecutive failed deliveries" and row.disabled_at is not None
    [(to, subject, html, text)] = emails
    assert to == owner.email and "Webhook switched off" in subject and receiver.url in text and "Jane" in html
    webhook_delivery.attempt(str(third.id))  # a switched-off subscription gets nothing more
    assert len(receiver.received) == 3
    assert db.session.get(WebhookDelivery, third.id).status == "failed"


def test_fan_out_is_once_per_event(sent):
    workspace = make_workspace()
    make_webhook(workspace)
    make_webhook(workspace, events=["conversation.created"])
    make_message_in(make_conversation(workspace))
    ids = [str(e.id) for e in _events()]
    created = webhook_delivery.fan_out(ids)
    assert len(created) == 3  # conversation.created x2, message.created x1
    assert webhook_delivery.fan_out(ids) == []


def test_the_sweep_sends_what_was_lost(sent):
    workspace = make_workspace()
    hook = make_webhook(workspace)
    make_message_in(make_conversation(workspace))  # two events; their fan-out task "lost"
    long_ago = utcnow() - timedelta(minutes=5)
    db.session.execute(WebhookEvent.__table__.update().values(created_at=long_ago))
    stuck = make_webhook_delivery(hook, attempts=1, next_attempt_at=long_ago)  # its worker died
    later = make_webhook_delivery(hook, next_attempt_at=utcnow() + timedelta(hours=1))
    sent.clear()
    assert webhook_sweep.sweep_once() == 3
    sent_ids = {args[0] for name, args, _ in sent if name == webhook_outbox.DELIVER_TASK}
    assert str(stuck.id) in sent_ids and str(later.id) not in sent_ids and len(sent_ids) == 3
    assert db.session.scalar(select(func.count()).where(WebhookEvent.fanned_out_at.is_(None))) == 0


def test_the_sweep_loop_runs_in_the_background(app, monkeypatch, sent):
    monkeypatch.setitem(app.config, "WEBHOOK_SWEEP_INTERVAL_SECONDS", 0.05)
    delivery = make_webhook_delivery(
        make_webhook(make_workspace()), next_attempt_at=utcnow() - timedelta(minutes=1)
    )
    db.session.commit()
    webhook_sweep.start_sweep_loop(app)
    try:
        deadline = time.monotonic() + 10
        while not any(args == [str(delivery.id)] for _n, args, _c in sent) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        webhook_sweep.stop_sweep_loop()
    assert any(args == [str(delivery.id)] for _n, args, _c in sent)


def test_a_broker_outage_is_logged_not_raised(app, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(app.extensions["celery"], "send_task", refuse)
    workspace = make_workspace()
    make_webhook(workspace)
    make_message_in(make_conversation(workspace))
    webhook_outbox.send_delivery(uuid.uuid4())
    assert "the sweep will send them" in caplog.text and "the sweep will send it" in caplog.text


def test_metrics_count_outcomes_and_show_the_queue(local, receiver, client, sent):
    receiver.statuses[:] = [500]
    delivery = make_webhook_delivery(make_webhook(make_workspace(), url=receiver.url))
    webhook_delivery.attempt(str(delivery.id))
    webhook_delivery.attempt(str(delivery.id))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'assistant_webhook_deliveries_total{status="retrying"} 1.0' in text
    assert 'assistant_webhook_deliveries_total{status="delivered"} 1.0' in text
    assert 'assistant_queue_depth{queue="webhooks"}' in text
    assert "assistant_webhook_deliveries_pending 0.0" in text


def test_every_event_type_is_known_to_the_catalogue():
    assert "handoff.requested" in EVENT_TYPES and len(EVENT_TYPES) == 5


def test_the_fan_out_task_attempts_a_lone_delivery_itself(local, receiver, sent):
    workspace = make_workspace()
    make_webhook(workspace, url=receiver.url, events=["message.created"])
    make_message_in(make_conversation(workspace))
    webhook_delivery.fan_out_and_send([str(e.id) for e in _events()])
    assert len(receiver.wait_for(1)) == 1
    assert not [args for name, args, _ in sent if name == webhook_outbox.DELIVER_TASK]
    make_webhook(workspace, url=receiver.url, events=["message.created"])
    webhook_outbox.forget_workspace(workspace.id)
    make_message_in(make_conversation(workspace))
    fresh = [str(e.id) for e in _events() if e.fanned_out_at is None]
    webhook_delivery.fan_out_and_send(fresh)
    assert len([args for name, args, _ in sent if name == webhook_outbox.DELIVER_TASK]) == 2
    assert len(receiver.received) == 1


def test_a_subscription_deleted_mid_attempt_is_not_an_error(local, receiver, sent):
    hook = make_webhook(make_workspace(), url=receiver.url)
    delivery = make_webhook_delivery(hook)
    found = webhook_delivery.claim(delivery.id)
    db.session.delete(db.session.get(WebhookSubscription, hook.id))
    db.session.commit()
    assert webhook_delivery.record(found, webhook_delivery.webhook_sender.Result(200, None, 5)) is None
    assert db.session.scalar(select(func.count()).select_from(WebhookAttempt)) == 0


def test_metrics_survive_redis_and_database_outages(app, client, monkeypatch):
    def boom(*args, **kwargs):
        raise ConnectionError("down")

    from backend import metrics

    monkeypatch.setattr(metrics, "redis_client", boom)
    metrics.record_webhook_delivery("delivered")  # logged, not raised
    monkeypatch.setattr(app.extensions["metrics"].redis, "hgetall", boom)
    monkeypatch.setattr(db.session, "execute", boom)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "assistant_webhook_deliveries" not in response.get_data(as_text=True)
