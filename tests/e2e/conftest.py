"""The end-to-end stack: fake Groq (in this process), gunicorn gevent web and a Celery
gevent worker as real processes, on the test PostgreSQL database and real Redis."""

import os
import signal
import time
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import text

from backend.extensions import db
from backend.metrics import _queue_lengths
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
        self._celery: Celery | None = None
        self._broker = redis.Redis.from_url(self.env["CELERY_BROKER_URL"])

    def api(self, path: str) -> str:
        return f"{self.url}/api/v1{path}"

    def restart_web(self) -> None:
        self.web.kill()
        self.web, self.url = start_web(self.env, LOG_DIR)

    def worker_env(self, **env) -> dict:
        """The stack's environment with `env` applied (a None value removes the variable)."""
        merged = {**self.env, **{k: str(v) for k, v in env.items() if v is not None}}
        for key, value in env.items():
            if value is None:
                merged.pop(key, None)
        return merged

    def add_worker(self, **env):
        worker = start_worker(self.worker_env(**env), LOG_DIR)
        self.workers.append(worker)
        return worker

    def kill_workers(self, sig=signal.SIGTERM) -> None:
        for worker in self.workers:
            worker.kill(sig)
        self.workers = []

    def ensure_worker(self) -> None:
        """Leaves exactly the stack's normal workers running (one, when a test removed them)."""
        self.workers = [w for w in self.workers if w.proc.poll() is None]
        if not self.workers:
            self.add_worker()

    def send_task(self, run_id: str) -> str:
        """Delivers `run_agent(run_id)` once more, as a redelivery by the broker would;
        returns the task id."""
        if self._celery is None:
            self._celery = Celery("e2e-client", broker=self.env["CELERY_BROKER_URL"])
        task = self._celery.send_task("backend.tasks.run_agent", args=[str(run_id)], queue="agent-runs")
        return task.id

    def wait_task_done(self, task_id: str, timeout: float = 20) -> None:
        """Waits until some worker logged that the task ran to its end."""
        needle = f"run_agent[{task_id}] succeeded"
        deadline = time.monotonic() + timeout
        while not any(needle in worker.output() for worker in self.workers):
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} did not finish within {timeout}s")
            time.sleep(0.1)

    def busy(self) -> list[str]:
        """What is still going on: tasks waiting in the broker or taken by a live worker,
        runs not finished. Read in the order work moves (broker, worker, database)."""
        found = []
        depths = _queue_lengths(self._broker, [self.env.get("AGENT_QUEUE", "agent-runs"), "default"])
        waiting = {queue: n for queue, n in depths.items() if n and queue != "__unacked__"}
        if waiting:
            found.append(f"tasks waiting in the broker: {waiting}")
        for worker in self.workers:
            if worker.proc.poll() is None and (tasks := worker.unfinished_tasks()):
                found.append(f"{worker.log_path.name} is running tasks {sorted(tasks)}")
        with db.engine.connect() as conn:
            runs = conn.execute(
                text("SELECT id, status FROM agent_runs WHERE status IN ('queued', 'running')")
            ).all()
        if runs:
            found.append(f"runs not finished: {[(str(run.id), run.status) for run in runs]}")
        return found

    def wait_idle(self, timeout: float = 60) -> None:
        """Waits until no run is queued or running and no worker has a task in hand (seen
        twice in a row: a task leaves the broker a moment before its worker logs it), so
        nothing a test started is still writing when the next test begins."""
        deadline = time.monotonic() + timeout
        idle_checks = 0
        while True:
            found = self.busy()
            idle_checks = 0 if found else idle_checks + 1
            if idle_checks == 2:
                return
            if found and time.monotonic() > deadline:
                raise TimeoutError(f"the stack was still busy {timeout}s after the test: {found}")
            time.sleep(0.05)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.web.stop()


# The stack's processes end with this package: alive, their recovery loops would pick up the
# runs that later in-process tests (the fuzzers) leave queued in the shared test database and
# run them in the background, writing rows while those tests compare the tables.
@pytest.fixture(scope="package")
def fake_groq():
    server = FakeGroq().start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def stack(app, fake_groq):
    stack = Stack(fake_groq)
    yield stack
    stack.stop()


@pytest.fixture
def groq(stack):
    stack.groq.reset()
    yield stack.groq
    stack.wait_idle()  # the test's runs end with the replies it scripted
    stack.groq.reset()


@pytest.fixture(autouse=True)
def _stack_idle_after_test(request, _app_context):
    """Before the tables are truncated, whatever the test set going has finished."""
    yield
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").wait_idle()
