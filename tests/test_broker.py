"""The broker transport (backend/broker.py) on the real Redis: tasks sent through it arrive
in their queue as kombu's own transport would put them, and one client per channel pool
sends them all."""

import base64
import json
import uuid

import pytest
import redis

from backend import broker
from backend.extensions import redis_client


@pytest.fixture
def queue(app):
    name = f"broker-test-{uuid.uuid4().hex[:8]}"
    yield name
    with app.app_context():
        redis_client().delete(name)


@pytest.fixture
def clients_made(monkeypatch):
    made = []
    real_init = redis.Redis.__init__

    def counting_init(self, *args, **kwargs):
        made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting_init)
    return made


def test_the_app_sends_tasks_through_the_project_transport(app):
    with app.extensions["celery"].connection_for_write() as connection:
        assert isinstance(connection.default_channel, broker.Channel)


def test_tasks_arrive_in_their_queue_and_share_one_client(app, queue, clients_made):
    celery = app.extensions["celery"]
    with app.app_context():
        for i in range(20):
            celery.send_task("backend.tasks.some_task", args=[i], queue=queue)
        payloads = [json.loads(raw) for raw in redis_client().lrange(queue, 0, -1)]
    assert sorted(_args(payload)[0] for payload in payloads) == list(range(20))
    # one client for the 20 tasks and their 20 task-sent events (kombu's own: one for each)
    assert len(clients_made) <= 2


def test_a_new_pool_gets_a_new_client(app, queue):
    with app.extensions["celery"].connection_for_write() as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first:
            pass
        with channel.conn_or_acquire() as again:
            assert again is first
        channel._pool = None  # what kombu does when the channel's connections were dropped
        with channel.conn_or_acquire() as after:
            assert after is not first and after.connection_pool is channel.pool
            after.lpush(queue, "still sends")
    with app.app_context():
        assert redis_client().lrange(queue, 0, -1) == ["still sends"]


def _args(payload: dict) -> list:
    """A task message's positional arguments (protocol 2: the body is [args, kwargs, embed])."""
    return json.loads(base64.b64decode(payload["body"]))[0]
