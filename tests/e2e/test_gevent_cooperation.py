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


def test_a_request_waiting_on_the_database_does_not_stall_the_worker(stack, groq):
    visitor = Visitor(stack, make_workspace().handle)
    url = make_url(TEST_DATABASE_URL)
    blocker = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database)
    try:
        with blocker.cursor() as cursor:  # hold the conversation's row lock
            cursor.execute(
                "SELECT id FROM conversations WHERE id = %s FOR UPDATE", (visitor.conversation_id,)
            )
        waiting: dict = {}
        poster = threading.Thread(target=lambda: waiting.setdefault("response", visitor.post("hello")))
        poster.start()
        time.sleep(0.5)  # the POST is now inside the web worker, waiting for the lock

        started = time.monotonic()
        health = requests.get(stack.api("/utils/health-check/"), timeout=10)
        profile = requests.get(stack.api(f"/public/workspaces/{make_workspace().handle}"), timeout=10)
        elapsed = time.monotonic() - started

        assert health.status_code == 200 and profile.status_code == 200
        assert elapsed < 1.0, f"the worker stalled for {elapsed:.2f}s behind one waiting query"
        assert "response" not in waiting, "the POST should still be waiting for the row lock"
    finally:
        blocker.commit()  # release the lock
        blocker.close()
    poster.join(10)
    assert waiting["response"].status_code == 201
