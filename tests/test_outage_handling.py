"""Riding out outages (issue 14), piece by piece: the hub ending its feeds when Redis goes
away, the per-connection cap for a client that stops reading, the run publisher's resync
after lost deltas and its retried first/last events, the retried final save, the worker's
quick broker reconnect. The e2e proofs with real processes are in tests/e2e/test_faults.py."""

import json
import socket
import time
import types
import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.exc import OperationalError, ProgrammingError

from backend import streams
from backend.extensions import QuickReconnectConsumer, redis_client
from backend.outages import retry_during_outage
from backend.services import dispatch, runs
from backend.stream_tail import StreamHub, Subscription, sse_events, stuck_client_guard
from backend.streams import RunPublisher, stream_key

DEAD_REDIS = "redis://127.0.0.1:1/0"


def drain(gen, timeout: float = 5.0) -> list[bytes]:
    """Everything the SSE generator yields until it ends by itself."""
    out = []
    deadline = time.monotonic() + timeout
    for text in gen:
        out.append(text)
        assert time.monotonic() < deadline, "the stream did not end"
    return out


class BrokenReader:
    """The hub's reader once Redis went away."""

    def xread(self, *args, **kwargs):
        raise redis.ConnectionError("Connection closed by server.")

    def close(self):
        pass


def test_the_hub_ends_every_feed_when_its_redis_connection_breaks(app):
    hub = StreamHub(app.config["REDIS_URL"])
    try:
        hub._reader = BrokenReader()
        feeds = [sse_events(hub, f"conv:{uuid.uuid4()}:events", "0-0", 1000, 1000) for _ in range(3)]
        assert [next(feed) for feed in feeds] == [b": connected\n\n"] * 3
        for feed in feeds:
            assert drain(feed) == []  # ended cleanly: the client reconnects with Last-Event-ID
        assert hub.watched_streams() == 0
    finally:
        hub.stop()


def test_a_resuming_stream_that_cannot_reach_redis_ends_at_once(app):
    """A visitor resuming from before what the hub already read needs a look-up, which
    fails: the stream ends cleanly (the client reconnects) instead of answering 500."""
    hub = StreamHub(app.config["REDIS_URL"])
    key = f"conv:{uuid.uuid4()}:events"
    try:
        first = hub.subscribe(key, "5-0")
        hub._short = redis.Redis.from_url(DEAD_REDIS, retry=Retry(NoBackoff(), 0))
        feed = sse_events(hub, key, "1-0", 1000, 1000)
        assert drain(feed) == [b": connected\n\n"]
        hub.unsubscribe(first)
    finally:
        hub.stop()


def test_a_subscription_past_its_cap_is_ended_and_its_connection_closed():
    closed = []
    sub = Subscription("k", "0-0", max_pending=3, on_overflow=lambda: closed.append(True))
    sub.put([("1-0", {}), ("2-0", {})])
    assert sub.next_batch(0) == [("1-0", {}), ("2-0", {})] and sub.pending == 0
    sub.put([("3-0", {}), ("4-0", {})])
    sub.put([("5-0", {}), ("6-0", {})])  # 4 waiting: past the cap of 3
    assert sub.ended == "overflow" and closed == [True]
    sub.put([("7-0", {})])  # an ended feed takes nothing more
    assert closed == [True]
    assert sub.next_batch(0) == [("3-0", {}), ("4-0", {})]
    assert sub.next_batch(0) == []  # the end marker


def test_stuck_client_guard_caps_the_send_buffer_and_shuts_the_socket():
    assert stuck_client_guard({}, 65536) is None  # not under gunicorn: nothing to close
    server, client = socket.socketpair()
    try:
        before = server.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        close = stuck_client_guard({"gunicorn.socket": server}, 8192)
        assert close is not None
        assert server.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) != before
        close()
        assert client.recv(10) == b""  # the peer sees the connection end
        close()  # a second shutdown of a shut socket is harmless
    finally:
        server.close()
        client.close()


def stream_events(conversation_id) -> list[tuple[str, dict]]:
    return [(f["e"], json.loads(f["d"])) for _, f in redis_client().xrange(stream_key(conversation_id))]


def flaky_append(monkeypatch, failures: int, error: Exception | None = None):
    """Makes the next `failures` stream writes fail as if Redis were unreachable."""
    real = streams.append_entries
    left = [failures]

    def append(*args, **kwargs):
        if left[0] > 0:
            left[0] -= 1
            raise error or redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379")
        return real(*args, **kwargs)

    monkeypatch.setattr(streams, "append_entries", append)
    return left


def flaky_batches(monkeypatch, failures: int) -> None:
    """Makes the process's StreamWriter fail its next `failures` batches as if Redis were
    unreachable."""
    real = streams.StreamWriter._send
    left = [failures]

    def send(self, publishers, batches):
        if left[0] > 0:
            left[0] -= 1
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379")
        return real(self, publishers, batches)

    monkeypatch.setattr(streams.StreamWriter, "_send", send)


def test_deltas_lost_while_redis_is_away_are_announced_by_a_resync(app, monkeypatch):
    conversation_id, run_id = uuid.uuid4(), uuid.uuid4()
    publisher = RunPublisher(conversation_id, run_id, uuid.uuid4(), batched=True)
    flaky_batches(monkeypatch, failures=1)
    publisher.delta("lost ")
    publisher.message_end("lost found", "completed", False, None)
    assert stream_events(conversation_id) == [
        ("resync", {"reason": "events_lost", "run_id": str(run_id)}),
        ("message_end", {**stream_events(conversation_id)[1][1], "full_text": "lost found"}),
    ]
    publisher.message_end("again", "completed", False, None)  # the gap is announced once
    assert [event for event, _ in stream_events(conversation_id)] == ["resync", "message_end", "message_end"]


def test_the_next_batch_after_a_loss_starts_with_the_resync(app, monkeypatch):
    conversation_id, run_id = uuid.uuid4(), uuid.uuid4()
    publisher = RunPublisher(conversation_id, run_id, uuid.uuid4(), batched=True)
    flaky_batches(monkeypatch, failures=1)
    publisher.delta("lost ")
    publisher.close()
    publisher.delta("kept")
    publisher.close()
    assert [(event, data.get("text_chunk")) for event, data in stream_events(conversation_id)] == [
        ("resync", None),
        ("delta", "kept"),
    ]


def test_message_start_is_retried_while_redis_is_away_and_other_errors_are_not(app, monkeypatch):
    conversation_id = uuid.uuid4()
    publisher = RunPublisher(conversation_id, uuid.uuid4(), uuid.uuid4())
    left = flaky_append(monkeypatch, failures=2)
    entry_id = publisher.message_start()
    assert left == [0] and stream_events(conversation_id)[0][0] == "message_start"
    assert redis_client().xrange(stream_key(conversation_id))[0][0] == entry_id
    flaky_append(monkeypatch, failures=1, error=redis.ResponseError("WRONGTYPE"))
    with pytest.raises(redis.ResponseError):
        publisher.message_start()


def test_retry_during_outage_gives_up_after_its_time():
    calls = []

    def down():
        calls.append(1)
        raise redis.ConnectionError("down")

    with pytest.raises(redis.ConnectionError):
        retry_during_outage(down, redis.RedisError, 0.3, "test", first_delay=0.1)
    assert 2 <= len(calls) <= 3


def test_a_finished_run_keeps_its_state_when_its_cancel_flag_cannot_be_deleted(app, monkeypatch):
    def refuse(*_args):
        raise redis.ConnectionError("down")

    monkeypatch.setattr(redis_client(), "delete", refuse)
    runs.forget_cancel_flag(uuid.uuid4())  # logged, not raised


def test_the_final_save_is_retried_while_the_database_is_away(app, monkeypatch):
    outcome = runs.Outcome("completed", "hi", {})
    answers = [OperationalError("COMMIT", {}, Exception("server closed the connection")), (True, None)]

    def finish_run(run_id, given):
        assert given is outcome
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(runs, "finish_run", finish_run)
    assert dispatch.save_outcome(uuid.uuid4(), outcome) == (True, None)
    answers[:] = [ProgrammingError("SELEKT", {}, Exception("syntax error"))]
    with pytest.raises(ProgrammingError):  # a bug is not an outage: not retried
        dispatch.save_outcome(uuid.uuid4(), outcome)


def test_the_worker_reconnects_to_a_lost_broker_in_short_steps():
    seen = {}

    class Conn:
        def ensure_connection(self, *args, **kwargs):
            seen.update(kwargs)
            return self

    consumer = object.__new__(QuickReconnectConsumer)
    conf = types.SimpleNamespace(
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=100,
    )
    consumer.app = types.SimpleNamespace(conf=conf)
    consumer.first_connection_attempt = False
    consumer.broker_connection_retry_attempt = 0
    conn = Conn()
    assert consumer.ensure_connected(conn) is conn
    assert (seen["interval_start"], seen["interval_step"], seen["interval_max"]) == (0.5, 0.5, 2.0)


def test_a_rollback_that_fails_with_the_database_gone_is_only_logged(app, monkeypatch):
    from backend.errors import rollback_session
    from backend.extensions import db

    def gone():
        raise OperationalError("ROLLBACK", {}, Exception("server closed the connection"))

    monkeypatch.setattr(db.session, "rollback", gone)
    rollback_session()


def test_metrics_say_whether_the_database_answered(app, client):
    from tests.helpers import build_app

    assert "assistant_database_up 1.0" in client.get("/metrics").get_data(as_text=True)
    dead = "postgresql+psycopg2://postgres@127.0.0.1:5439/none"
    with build_app(app, SQLALCHEMY_DATABASE_URI=dead) as broken:
        text = broken.test_client().get("/metrics").get_data(as_text=True)
    assert "assistant_database_up 0.0" in text and "assistant_runs_current" not in text
