"""Push notifications through the real processes: the owner's phone registers its token with
gunicorn (gevent); a visitor starting a conversation there (opt-in workspace) writes the
outbox row; the Procfile's `webhooks` Celery worker (gevent pool, queues `webhooks,push`) sends
it to a fake Expo server started here. A 503 is retried; a worker SIGKILLed while the fake
Expo holds its request is replaced and the push delivered again by the sweep once the
attempt's lease ends (at least once: Expo saw the first request too); a handoff set through
the ORM whose task never reached this worker's broker is sent by the sweep."""

import signal
import time

import pytest
import requests
from sqlalchemy import select

from backend.extensions import db
from backend.models import PushNotification
from backend.models.types import utcnow
from tests.e2e.chat import Visitor
from tests.e2e.conftest import LOG_DIR
from tests.e2e.harness import Process, procfile_command
from tests.factories import DEFAULT_PASSWORD, make_conversation, make_workspace
from tests.fake_expo import FakeExpo
from tests.helpers import free_port

PUSH_ENV = {
    "EXPO_PUSH_TIMEOUT_SECONDS": "2",
    "PUSH_RETRY_BACKOFF_SECONDS": "1",
    # Longer than an attempt (the timeout): the sweep never resends an attempt in flight.
    "PUSH_LEASE_SECONDS": "4",
    "PUSH_SWEEP_INTERVAL_SECONDS": "1",
}
PHONE = "ExponentPushToken[e2e-owner-phone]"


def start_push_worker(env: dict) -> Process:
    command = procfile_command("webhooks").replace("webhooks@%h", f"push-{free_port()}@%h")
    worker = Process("webhooks", env, LOG_DIR, command=command)
    worker.wait_for_output("ready.", timeout=40)
    return worker


class Pushing:
    def __init__(self, stack, expo: FakeExpo) -> None:
        self.env = stack.worker_env(EXPO_PUSH_URL=expo.url, **PUSH_ENV)
        self.worker = start_push_worker(self.env)

    def replace_worker(self, sig=signal.SIGTERM) -> None:
        self.worker.kill(sig)
        self.worker = start_push_worker(self.env)


@pytest.fixture(scope="module")
def expo():
    server = FakeExpo()
    yield server
    server.close()


@pytest.fixture(scope="module")
def pushing(stack, expo):
    pushing = Pushing(stack, expo)
    yield pushing
    pushing.worker.stop()


@pytest.fixture(autouse=True)
def _fresh_expo(expo):
    expo.requests.clear()
    expo.statuses.clear()
    expo.delays.clear()
    expo.unregistered.clear()


def _register_phone(stack, workspace) -> None:
    login = requests.post(
        stack.api("/login/access-token"),
        data={"username": workspace.owner.email, "password": DEFAULT_PASSWORD},
        timeout=10,
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    for _ in range(2):  # the app registers again on every start: still one token
        response = requests.post(
            stack.api("/users/me/push-tokens"), json={"token": PHONE}, headers=headers, timeout=10
        )
        assert response.status_code == 201, response.text


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


def _status() -> str | None:
    return db.session.execute(select(PushNotification.status)).scalars().first()


def test_a_new_conversation_reaches_the_phone_after_a_503(pushing, stack, expo):
    expo.statuses[:] = [503]
    workspace = make_workspace(push_on_new_conversation=True)
    _register_phone(stack, workspace)
    visitor = Visitor(stack, workspace.handle, name="Bo")
    first, second = expo.wait_for(2, timeout=30)
    _wait(lambda: _status() == "sent", what="sent")
    assert first.messages == second.messages and second.tokens == [PHONE]
    assert 0.8 <= second.at - first.at < 5  # PUSH_RETRY_BACKOFF_SECONDS=1, jittered
    [message] = second.messages
    assert message["title"] == "New conversation" and message["body"] == "Bo started a conversation."
    assert message["data"] == {
        "type": "conversation.created",
        "conversation_id": visitor.conversation_id,
        "workspace_id": str(workspace.id),
    }
    assert visitor.token not in str(message)
    assert db.session.execute(select(PushNotification.attempts)).scalar_one() == 2


def test_a_worker_killed_mid_send_is_replaced_and_the_push_delivered(pushing, stack, expo):
    expo.delays[:] = [30]  # Expo holds the first request
    workspace = make_workspace(push_on_new_conversation=True)
    _register_phone(stack, workspace)
    Visitor(stack, workspace.handle)
    expo.wait_for(1, timeout=30)
    killed_at = time.monotonic()
    pushing.replace_worker(signal.SIGKILL)  # while the request is held: no answer was read
    first, second = expo.wait_for(2, timeout=40)
    _wait(lambda: _status() == "sent", what="sent after the restart")
    # At least once: Expo got the message twice (the first request's answer never arrived).
    assert first.messages == second.messages and second.tokens == [PHONE]
    assert second.at - killed_at < 30
    assert db.session.execute(select(PushNotification.attempts)).scalar_one() == 2
    assert "push sweep: sent 1 notification task(s) again" in pushing.worker.output()


def test_a_handoff_whose_task_was_lost_is_sent_by_the_sweep(pushing, stack, expo):
    workspace = make_workspace()
    _register_phone(stack, workspace)
    conversation = make_conversation(workspace, visitor_name="Ana")
    # Set here, through the ORM: this process's task goes to its own broker, not the
    # worker's, so only the sweep can send it (as after a crash right after the commit).
    conversation.handoff_requested_at = utcnow()
    conversation.handoff_reason = "Wants to talk about a refund"
    db.session.commit()
    [request] = expo.wait_for(1, timeout=30)
    _wait(lambda: _status() == "sent", what="sent by the sweep")
    [message] = request.messages
    assert (message["to"], message["title"], message["body"]) == (
        PHONE,
        "Ana asked for a person",
        "Wants to talk about a refund",
    )
    assert message["data"]["type"] == "handoff.requested"
