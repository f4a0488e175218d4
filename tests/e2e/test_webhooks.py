"""Webhooks through the real processes: gunicorn (gevent) and the agent worker record the
events, the Procfile's `webhooks` Celery worker (gevent pool, queue `webhooks`) delivers them
to a real HTTP receiver started here. Signatures are checked by the test's own HMAC code; a
failure is retried with the same X-Webhook-Id; a receiver that is down gets the event once it
is up; a worker killed with SIGKILL mid-delivery, a receiver slower than the timeout and an
event whose task was never sent (a crash right after the commit) are all delivered by the
retry or the sweep."""

import signal
import time
import uuid
from datetime import datetime

import pytest
import requests
from sqlalchemy import select

from backend.extensions import db
from backend.models import WebhookAttempt, WebhookDelivery, WebhookEvent
from backend.models.types import utcnow
from tests.e2e.chat import Visitor
from tests.e2e.conftest import LOG_DIR
from tests.e2e.harness import Process, procfile_command, start_web
from tests.factories import DEFAULT_PASSWORD, make_workspace
from tests.fake_groq import Reply
from tests.helpers import free_port
from tests.webhooks.receiver import Receiver, signature_is_valid

WEBHOOK_ENV = {
    "WEBHOOK_ALLOW_PRIVATE": "true",
    "WEBHOOK_ALLOW_HTTP": "true",
    "WEBHOOK_RETRY_SCHEDULE": "1,1,1,1,1,1,1,1,1,1",
    "WEBHOOK_LEASE_SECONDS": "8",
    "WEBHOOK_SWEEP_INTERVAL_SECONDS": "1",
    "WEBHOOK_SUBSCRIPTION_CACHE_SECONDS": "0",
}


def start_webhooks_worker(env: dict) -> Process:
    command = procfile_command("webhooks").replace("webhooks@%h", f"webhooks-{free_port()}@%h")
    worker = Process("webhooks", env, LOG_DIR, command=command + " --without-gossip --without-mingle")
    worker.wait_for_output("ready.", timeout=40)
    return worker


class Hooked:
    """The Procfile's `webhooks` worker and a web process, both with the settings above (the
    web accepts the receiver's http:// URL); the stack's web and agent worker raise events."""

    def __init__(self, stack) -> None:
        self.env = stack.worker_env(**WEBHOOK_ENV)
        self.worker = start_webhooks_worker(self.env)
        self.web, url = start_web(self.env, LOG_DIR)
        self.api = f"{url}/api/v1"

    def replace_worker(self, sig=signal.SIGTERM) -> None:
        self.worker.kill(sig)
        self.worker = start_webhooks_worker(self.env)

    def stop(self) -> None:
        self.worker.stop()
        self.web.stop()


@pytest.fixture(scope="module")
def hooked(stack):
    hooked = Hooked(stack)
    yield hooked
    hooked.stop()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def _owner_headers(api: str, workspace) -> dict:
    response = requests.post(
        f"{api}/login/access-token",
        data={"username": workspace.owner.email, "password": DEFAULT_PASSWORD},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _subscribe(api: str, workspace, url: str, events: list[str]) -> tuple[dict, dict]:
    headers = _owner_headers(api, workspace)
    response = requests.post(
        f"{api}/workspaces/{workspace.id}/webhooks",
        json={"url": url, "events": events},
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response.json(), headers


def _wait(predicate, timeout: float = 40, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.expire_all()
        value = predicate()
        db.session.rollback()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{what} not met within {timeout}s")


def _delivered_count() -> int:
    return len(
        db.session.execute(select(WebhookDelivery.id).where(WebhookDelivery.status == "delivered")).all()
    )


def test_chat_events_are_signed_and_a_failure_is_retried_with_the_same_id(hooked, stack, groq, receiver):
    receiver.statuses[:] = [500]
    groq.default = Reply.text("We are open from nine to five.")
    workspace = make_workspace()
    hook, headers = _subscribe(
        hooked.api, workspace, receiver.url, ["conversation.created", "message.created", "reply.completed"]
    )
    visitor = Visitor(stack, workspace.handle)
    visitor.send("When are you open?")
    _wait(lambda: receiver.of_type("reply.completed"), what="reply.completed delivered")
    _wait(lambda: _delivered_count() == 4, what="four deliveries")

    assert all(signature_is_valid(hook["secret"], r) for r in receiver.received)
    bodies = [r.json for r in receiver.received]
    ids = [r.headers["X-Webhook-Id"] for r in receiver.received]
    assert ids == [b["id"] for b in bodies]
    assert len(ids) == 5 and len(set(ids)) == 4  # the first was answered 500, then sent again
    again = ids.index(ids[0], 1)
    assert bodies[again] == bodies[0]
    assert sorted(b["type"] for b in bodies[1:]) == [
        "conversation.created", "message.created", "message.created", "reply.completed",
    ]  # fmt: skip
    reply = receiver.of_type("reply.completed")[0].json["data"]
    assert (
        reply["content"] == "We are open from nine to five."
        and reply["conversation_id"] == visitor.conversation_id
    )
    assert {b["workspace_id"] for b in bodies} == {str(workspace.id)}

    log = requests.get(f"{hooked.api}/webhooks/{hook['id']}/deliveries", headers=headers, timeout=10).json()
    assert log["count"] == 5
    retried = sorted((a for a in log["data"] if a["event_id"] == ids[0]), key=lambda a: a["attempt"])
    assert [(a["attempt"], a["status_code"]) for a in retried] == [(1, 500), (2, 200)]
    assert retried[0]["next_retry_at"] is not None and retried[0]["error"] == "HTTP 500"
    waited = datetime.fromisoformat(retried[1]["created_at"]) - datetime.fromisoformat(
        retried[0]["created_at"]
    )
    assert waited.total_seconds() >= 0.8  # the schedule's 1 s, jittered by at most 20 %


def test_a_receiver_that_is_down_gets_the_event_once_it_is_up(hooked, stack):
    port = free_port()
    workspace = make_workspace()
    _subscribe(hooked.api, workspace, f"http://127.0.0.1:{port}/hooks", ["conversation.created"])
    Visitor(stack, workspace.handle)
    _wait(lambda: db.session.execute(select(WebhookAttempt.error)).scalars().first(), what="a failed attempt")
    assert "Connect" in db.session.execute(select(WebhookAttempt.error)).scalars().first()
    server = Receiver(port=port)
    try:
        [got] = server.wait_for(1, timeout=30)
        assert got.json["type"] == "conversation.created"
        _wait(lambda: _delivered_count() == 1, what="delivered")
    finally:
        server.close()


def test_a_worker_killed_mid_delivery_is_replaced_and_the_event_sent_again(hooked, stack, receiver):
    receiver.delays[:] = [10]
    workspace = make_workspace()
    _subscribe(hooked.api, workspace, receiver.url, ["conversation.created"])
    Visitor(stack, workspace.handle)
    receiver.wait_for(1, timeout=30)
    hooked.replace_worker(signal.SIGKILL)  # mid-delivery: the receiver has not answered yet
    second = receiver.wait_for(2, timeout=40)
    assert second[0].headers["X-Webhook-Id"] == second[1].headers["X-Webhook-Id"]
    assert second[0].body == second[1].body
    _wait(lambda: _delivered_count() == 1, what="delivered")
    assert db.session.execute(select(WebhookDelivery.attempts)).scalar_one() == 2


def test_a_receiver_slower_than_the_timeout_is_retried(hooked, stack, receiver):
    receiver.delays[:] = [10]
    workspace = make_workspace()
    _subscribe(hooked.api, workspace, receiver.url, ["conversation.created"])
    Visitor(stack, workspace.handle)
    _wait(lambda: _delivered_count() == 1, what="delivered after a timeout")
    attempts = db.session.execute(select(WebhookAttempt).order_by(WebhookAttempt.attempt)).scalars().all()
    assert [(a.attempt, a.status_code, a.error) for a in attempts] == [
        (1, None, "timed out after 5 s"),
        (2, 200, None),
    ]
    assert 4500 <= attempts[0].duration_ms < 8000
    assert len({r.headers["X-Webhook-Id"] for r in receiver.received}) == 1


def test_an_event_whose_task_was_never_sent_is_delivered_by_the_sweep(hooked, stack, receiver):
    workspace = make_workspace()
    _subscribe(hooked.api, workspace, receiver.url, ["message.created"])
    # As if the web process died right after committing: the outbox row, and no task.
    event_id = uuid.uuid4()
    db.session.add(
        WebhookEvent(
            id=event_id, workspace_id=workspace.id, type="message.created", data={"n": 1}, created_at=utcnow()
        )
    )
    db.session.commit()
    [got] = receiver.wait_for(1, timeout=30)
    assert got.headers["X-Webhook-Id"] == str(event_id) and got.json["data"] == {"n": 1}
    _wait(lambda: _delivered_count() == 1, what="delivered")
