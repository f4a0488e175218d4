"""One gunicorn gevent worker must keep serving while one of its requests waits on
PostgreSQL: psycopg2 only yields to other greenlets because gunicorn.conf.py's
post_fork applies psycogreen. A row lock held by this test makes one request wait."""

import threading
import time

import psycopg2
import requests
from sqlalchemy.engine import make_url

from tests.conftest import TEST_DATABASE_URL
from tests.e2e.chat import Visitor
from tests.factories import make_workspace


def connect():
    url = make_url(TEST_DATABASE_URL)
    return psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database)


def waiting_behind(monitor, blocker_pid: int) -> list[tuple]:
    """(pid, wait_event_type, query) of the backends waiting for a lock `blocker_pid` holds."""
    with monitor.cursor() as cursor:
        cursor.execute(
            "SELECT pid, wait_event_type, query FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
            (blocker_pid,),
        )
        return cursor.fetchall()


def wait_until_waiting_behind(monitor, blocker_pid: int, timeout: float = 10) -> list[tuple]:
    deadline = time.monotonic() + timeout
    while not (waiting := waiting_behind(monitor, blocker_pid)):
        assert time.monotonic() < deadline, f"no backend waited for the row lock within {timeout}s"
        time.sleep(0.02)
    return waiting


def test_a_request_waiting_on_the_database_does_not_stall_the_worker(stack, groq):
    visitor = Visitor(stack, make_workspace().handle)
    blocker, monitor = connect(), connect()
    monitor.autocommit = True
    try:
        with blocker.cursor() as cursor:  # hold the conversation's row lock
            cursor.execute(
                "SELECT id FROM conversations WHERE id = %s FOR UPDATE", (visitor.conversation_id,)
            )
        waiting: dict = {}
        poster = threading.Thread(target=lambda: waiting.setdefault("response", visitor.post("hello")))
        poster.start()
        # The POST is inside the web worker once its query waits for our lock in PostgreSQL.
        [(pid, wait_type, query)] = wait_until_waiting_behind(monitor, blocker.get_backend_pid())
        assert wait_type == "Lock" and "conversations" in query, query

        started = time.monotonic()
        health = requests.get(stack.api("/utils/health-check/"), timeout=10)
        profile = requests.get(stack.api(f"/public/workspaces/{make_workspace().handle}"), timeout=10)
        elapsed = time.monotonic() - started

        assert health.status_code == 200 and profile.status_code == 200
        assert elapsed < 1.0, f"the worker stalled for {elapsed:.2f}s behind one waiting query"
        # Both were answered while the POST's query was still waiting for the lock.
        assert [row[0] for row in waiting_behind(monitor, blocker.get_backend_pid())] == [pid]
        assert "response" not in waiting, "the POST should still be waiting for the row lock"
    finally:
        blocker.commit()  # release the lock
        blocker.close()
        monitor.close()
    poster.join(10)
    assert waiting["response"].status_code == 201
