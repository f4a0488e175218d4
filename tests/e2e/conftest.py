"""The end-to-end stack: fake Groq (in this process), gunicorn gevent web and a Celery
gevent worker as real processes, on the test PostgreSQL database and real Redis."""

import os
from pathlib import Path

import pytest

from tests.e2e.harness import base_env, start_web, start_worker
from tests.fake_groq import FakeGroq

LOG_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e-logs"


def _broker_url(redis_url: str) -> str:
    # The broker gets its own Redis database: tests flush the event-bus database
    # after each test, and that must not wipe Celery's queue bindings.
    base, _, db = redis_url.rpartition("/")
    return f"{base}/{(int(db or 0) + 8) % 16}"


class Stack:
    def __init__(self, groq: FakeGroq):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.groq = groq
        redis_url = os.environ["TEST_REDIS_URL"]
        self.env = base_env(
            os.environ["TEST_DATABASE_URL"],
            redis_url,
            groq.base_url,
            CELERY_BROKER_URL=_broker_url(redis_url),
        )
        self.web, self.url = start_web(self.env, LOG_DIR)
        self.workers = [start_worker(self.env, LOG_DIR)]

    def api(self, path: str) -> str:
        return f"{self.url}/api/v1{path}"

    def restart_web(self) -> None:
        self.web.kill()
        self.web, self.url = start_web(self.env, LOG_DIR)

    def add_worker(self, **env):
        worker = start_worker({**self.env, **env}, LOG_DIR)
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.web.stop()


@pytest.fixture(scope="session")
def fake_groq():
    server = FakeGroq().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(app, fake_groq):
    stack = Stack(fake_groq)
    yield stack
    stack.stop()


@pytest.fixture
def groq(stack):
    stack.groq.reset()
    yield stack.groq
    stack.groq.reset()
