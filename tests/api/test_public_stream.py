"""The conversation event stream (SSE) through the Flask test client: headers, event
format, heartbeats, the connection's lifetime and where a stream starts."""

import json
import time
import uuid
from datetime import UTC, datetime

import pytest

from backend.extensions import db, redis_client
from backend.models import AgentRun
from backend.services.runs import reply_message_id
from backend.streams import RunPublisher, stream_key
from tests.api.visitors import API, post_message, visitor
from tests.helpers import assert_error

MAX_SECONDS = 1.5
HEARTBEAT = 0.4


@pytest.fixture(autouse=True)
def short_streams(app, monkeypatch):
    monkeypatch.setitem(app.config, "SSE_MAX_SECONDS", MAX_SECONDS)
    monkeypatch.setitem(app.config, "SSE_HEARTBEAT_SECONDS", HEARTBEAT)


class SSEReader:
    """Reads a streamed test-client response and parses its Server-Sent Events."""

    def __init__(self, response):
        self.response = response
        self._chunks = iter(response.response)
        self._buffer = ""
        self.raw = ""
        self.events: list[dict] = []  # {"id", "event", "data"} in arrival order
        self.comments: list[str] = []
        self.ended = False

    def pull(self) -> bool:
        """Reads one chunk; False once the server closed the stream."""
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self.ended = True
            return False
        text = chunk.decode() if isinstance(chunk, bytes) else chunk
        self.raw += text
        self._buffer += text
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            self._parse(block)
        return True

    def _parse(self, block: str) -> None:
        lines = block.split("\n")
        if all(line.startswith(":") for line in lines):
            self.comments.extend(line[1:].strip() for line in lines)
            return
        assert len(lines) == 3, f"an event is id, event, data: {block!r}"
        (k1, v1), (k2, v2), (k3, v3) = (line.split(": ", 1) for line in lines)
        assert (k1, k2, k3) == ("id", "event", "data"), block
        self.events.append({"id": v1, "event": v2, "data": json.loads(v3)})

    def read_until(self, predicate, timeout: float = 5.0) -> "SSEReader":
        deadline = time.monotonic() + timeout
        while not predicate(self):
            assert time.monotonic() < deadline, f"timed out; got {self.events}"
            assert self.pull(), f"stream closed early; got {self.events}"
        return self

    def read_all(self) -> "SSEReader":
        while self.pull():
            pass
        return self

    def close(self) -> None:
        self.response.close()


def open_stream(client, conversation_id, token, cursor=None, via="header") -> SSEReader:
    url = f"{API}/conversations/{conversation_id}/stream"
    headers = {"X-Visitor-Token": token}
    if cursor is not None and via == "header":
        headers["Last-Event-ID"] = cursor
    elif cursor is not None:
        url += f"?last_event_id={cursor}"
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return SSEReader(response)


def make_run(client, conversation_id, token, status="running") -> AgentRun:
    """A run of the conversation in `status` (posted as a visitor message)."""
    run_id = post_message(client, conversation_id, token, f"message {uuid.uuid4().hex[:6]}").get_json()[
        "run"
    ]["id"]
    run = db.session.get(AgentRun, uuid.UUID(run_id))
    run.status = status
    if status not in ("queued", "running"):
        run.finished_at = datetime.now(UTC)
    db.session.commit()
    return run


def publish_run(conversation_id, run: AgentRun, text_chunks=("Hello", " there"), end=True) -> list[str]:
    """Publishes a run's events like the runner does; records its first event id."""
    publisher = RunPublisher(conversation_id, run.id, reply_message_id(run.id))
    ids = [publisher.message_start()]
    run.first_event_id = ids[0]
    db.session.commit()
    ids += [publisher.delta(chunk) for chunk in text_chunks]
    if end:
        ids.append(publisher.message_end("".join(text_chunks), "completed", False, {"total_tokens": 3}))
    return ids


def events_of(reader: SSEReader, run_id) -> list[dict]:
    return [e for e in reader.events if e["data"].get("run_id") == str(run_id)]


# --- the response -----------------------------------------------------------------------


def test_headers_event_format_and_lifetime(client):
    conversation_id, token = visitor(client)
    run = make_run(client, conversation_id, token)
    ids = publish_run(conversation_id, run)

    started = time.monotonic()
    reader = open_stream(client, conversation_id, token, cursor="0-0")
    assert reader.response.mimetype == "text/event-stream"
    assert reader.response.headers["Cache-Control"] == "no-cache"
    assert reader.response.headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in reader.response.headers
    reader.read_all()
    elapsed = time.monotonic() - started

    assert MAX_SECONDS <= elapsed < MAX_SECONDS + 2.0  # closes after SSE_MAX_SECONDS
    assert [e["id"] for e in reader.events] == ids
    assert [e["event"] for e in reader.events] == ["message_start", "delta", "delta", "message_end"]
    stored = redis_client().xrange(stream_key(conversation_id))
    for event, (entry_id, fields) in zip(reader.events, stored, strict=True):
        assert event["id"] == entry_id
        # The data line is the stored JSON, on one line.
        assert f"id: {entry_id}\nevent: {fields['e']}\ndata: {fields['d']}\n\n" in reader.raw
    end = reader.events[-1]["data"]
    assert end["full_text"] == "Hello there" and end["status"] == "completed"
    assert "ping" in reader.comments


def test_ping_after_heartbeat_when_idle(client):
    conversation_id, token = visitor(client)
    reader = open_stream(client, conversation_id, token)
    started = time.monotonic()
    reader.pull()  # the opening comment
    reader.read_until(lambda r: "ping" in r.comments)
    assert time.monotonic() - started >= HEARTBEAT * 0.9
    reader.read_all()
    assert reader.events == []
    pings = reader.comments.count("ping")
    assert 2 <= pings <= int(MAX_SECONDS / HEARTBEAT) + 1
    assert reader.raw.count(": ping\n\n") == pings


def test_heartbeat_is_not_sent_while_events_flow(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "SSE_HEARTBEAT_SECONDS", 1.5)
    monkeypatch.setitem(app.config, "SSE_MAX_SECONDS", 10.0)
    conversation_id, token = visitor(client)
    run = make_run(client, conversation_id, token)
    publisher = RunPublisher(conversation_id, run.id, reply_message_id(run.id))
    reader = open_stream(client, conversation_id, token)
    reader.pull()
    for i in range(5):
        publisher.delta(f"chunk {i}")
        reader.read_until(lambda r, n=i + 1: len(r.events) == n)
        time.sleep(0.1)
    assert reader.comments.count("ping") == 0
    reader.close()


# --- where a stream starts ----------------------------------------------------------------


@pytest.mark.parametrize("via", ["header", "query"])
def test_resumes_after_the_last_event_id(client, via):
    conversation_id, token = visitor(client)
    run = make_run(client, conversation_id, token)
    ids = publish_run(conversation_id, run, text_chunks=("a", "b", "c", "d"))
    reader = open_stream(client, conversation_id, token, cursor=ids[2], via=via)
    reader.read_until(lambda r: r.events and r.events[-1]["event"] == "message_end")
    assert [e["id"] for e in reader.events] == ids[3:]
    reader.close()


def test_stream_cursor_from_posting_shows_that_run_from_its_start(client):
    conversation_id, token = visitor(client)
    earlier = make_run(client, conversation_id, token, status="completed")
    publish_run(conversation_id, earlier, text_chunks=("old",))

    posted = post_message(client, conversation_id, token, "new question").get_json()
    run = db.session.get(AgentRun, uuid.UUID(posted["run"]["id"]))
    run.status = "running"
    db.session.commit()
    ids = publish_run(conversation_id, run, text_chunks=("new", " answer"))

    reader = open_stream(client, conversation_id, token, cursor=posted["stream_cursor"])
    reader.read_until(lambda r: r.events and r.events[-1]["event"] == "message_end")
    assert [e["id"] for e in reader.events] == ids
    assert {e["data"]["run_id"] for e in reader.events} == {posted["run"]["id"]}
    reader.close()


def test_without_cursor_starts_at_the_oldest_unfinished_run(client):
    conversation_id, token = visitor(client)
    finished = make_run(client, conversation_id, token, status="completed")
    publish_run(conversation_id, finished)
    finished_id = finished.id
    running = make_run(client, conversation_id, token, status="running")
    running_ids = publish_run(conversation_id, running, text_chunks=("first", " part"), end=False)
    running_id = running.id
    make_run(client, conversation_id, token, status="queued")

    reader = open_stream(client, conversation_id, token)
    reader.read_until(lambda r: len(r.events) == len(running_ids))
    assert [e["id"] for e in reader.events] == running_ids
    assert reader.events[0]["event"] == "message_start"
    assert events_of(reader, finished_id) == []

    # The rest of the run arrives live on the same connection.
    publisher = RunPublisher(conversation_id, running_id, reply_message_id(running_id))
    end_id = publisher.message_end("first part", "completed", False, None)
    reader.read_until(lambda r: r.events[-1]["id"] == end_id)
    assert [e["event"] for e in reader.events] == ["message_start", "delta", "delta", "message_end"]
    reader.close()


def test_without_cursor_and_nothing_unfinished_is_live(client):
    conversation_id, token = visitor(client)
    finished = make_run(client, conversation_id, token, status="completed")
    publish_run(conversation_id, finished)
    finished_id = finished.id

    reader = open_stream(client, conversation_id, token)
    reader.pull()  # subscribed now
    later = make_run(client, conversation_id, token, status="running")
    ids = publish_run(conversation_id, later, text_chunks=("live",))
    reader.read_until(lambda r: len(r.events) == len(ids))
    assert [e["id"] for e in reader.events] == ids
    assert events_of(reader, finished_id) == []
    reader.close()


def test_queued_run_without_events_means_live(client):
    conversation_id, token = visitor(client)
    finished = make_run(client, conversation_id, token, status="completed")
    publish_run(conversation_id, finished)
    make_run(client, conversation_id, token, status="queued")
    reader = open_stream(client, conversation_id, token)
    reader.read_all()
    assert reader.events == []


def test_stream_spans_several_runs(client):
    conversation_id, token = visitor(client)
    reader = open_stream(client, conversation_id, token)
    reader.pull()
    all_ids = []
    for _ in range(3):
        run = make_run(client, conversation_id, token)
        all_ids += publish_run(conversation_id, run)
        run.status = "completed"
        db.session.commit()
    reader.read_until(lambda r: len(r.events) == len(all_ids))
    assert [e["id"] for e in reader.events] == all_ids
    reader.close()


# --- lost cursors -----------------------------------------------------------------------------


def test_trimmed_cursor_yields_one_resync(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "STREAM_MAXLEN", 10)
    conversation_id, token = visitor(client)
    run = make_run(client, conversation_id, token)
    publisher = RunPublisher(conversation_id, run.id, reply_message_id(run.id))
    first = publisher.message_start()
    last = None
    for i in range(600):
        last = publisher.delta(f"{i} ")
    kept = redis_client().xlen(stream_key(conversation_id))
    assert kept < 600  # (approximate) trimming happened
    assert redis_client().xrange(stream_key(conversation_id), count=1)[0][0] != first

    reader = open_stream(client, conversation_id, token, cursor=first)
    reader.pull()
    assert len(reader.events) == 1
    resync = reader.events[0]
    assert resync["event"] == "resync"
    assert set(resync["data"]) == {"reason"} and isinstance(resync["data"]["reason"], str)
    assert resync["id"] == last  # resuming from it continues live, without a replay
    # Nothing old is replayed; new events arrive.
    end = publisher.message_end("x", "completed", False, None)
    reader.read_until(lambda r: r.events[-1]["id"] == end)
    reader.read_all()
    assert [e["event"] for e in reader.events] == ["resync", "message_end"]


def test_expired_stream_yields_one_resync(client):
    conversation_id, token = visitor(client)
    run = make_run(client, conversation_id, token)
    ids = publish_run(conversation_id, run)
    redis_client().delete(stream_key(conversation_id))
    reader = open_stream(client, conversation_id, token, cursor=ids[1], via="query").read_all()
    assert [e["event"] for e in reader.events] == ["resync"]
    assert "reason" in reader.events[0]["data"]


def test_cursor_that_is_still_kept_does_not_resync(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "STREAM_MAXLEN", 10)
    conversation_id, token = visitor(client)
    run = make_run(client, conversation_id, token)
    publisher = RunPublisher(conversation_id, run.id, reply_message_id(run.id))
    ids = [publisher.delta(f"{i}") for i in range(400)]
    kept = [entry_id for entry_id, _ in redis_client().xrange(stream_key(conversation_id))]
    cursor = kept[1]
    reader = open_stream(client, conversation_id, token, cursor=cursor)
    reader.read_until(lambda r: r.events and r.events[-1]["id"] == ids[-1])
    assert [e["id"] for e in reader.events] == kept[2:]
    reader.close()


@pytest.mark.parametrize(
    "cursor",
    [
        "abc",
        "1-2-3",
        "-1",
        "1-",
        "1.5",
        "now",
        "$",
        "99999999999999999999999-0",
        "1-99999999999999999999999",
        "5-0%0A",
        "1" * 5000,
    ],
)
@pytest.mark.parametrize("via", ["header", "query"])
def test_malformed_cursor_is_422(client, cursor, via):
    conversation_id, token = visitor(client)
    url = f"{API}/conversations/{conversation_id}/stream"
    headers = {"X-Visitor-Token": token}
    if via == "header":
        headers["Last-Event-ID"] = cursor
    else:
        url += f"?last_event_id={cursor}"
    response = client.get(url, headers=headers)
    assert_error(response, 422)
    assert response.mimetype == "application/json"


def test_a_bad_cursor_does_not_stall_other_streams(client):
    """The hub reads every watched stream in one XREAD: a cursor Redis rejects would
    break that read for everyone, so it must never reach the hub."""
    conversation_a, token_a = visitor(client)
    conversation_b, token_b = visitor(client)
    publish_run(conversation_a, make_run(client, conversation_a, token_a))
    bad = client.get(
        f"{API}/conversations/{conversation_a}/stream",
        headers={"X-Visitor-Token": token_a, "Last-Event-ID": "18446744073709551616-0"},
    )
    assert bad.status_code == 422
    reader = open_stream(client, conversation_b, token_b)
    reader.pull()
    run = make_run(client, conversation_b, token_b)
    ids = publish_run(conversation_b, run)
    reader.read_until(lambda r: len(r.events) == len(ids), timeout=3)
    reader.close()


def test_the_server_iterates_the_event_generator_itself_and_closing_it_logs_the_request(client, app, capsys):
    """What the WSGI server gets is the stream's own generator (no wrapper generator per
    held stream) yielding bytes; closing the body ends the subscription and writes the
    stream's request log line, with its duration."""
    import inspect

    from werkzeug.test import EnvironBuilder

    conversation_id, token = visitor(client)
    hub = app.extensions["sse_hub"]
    watched = hub.watched_streams()
    environ = EnvironBuilder(
        path=f"{API}/conversations/{conversation_id}/stream", headers={"X-Visitor-Token": token}
    ).get_environ()
    started = []
    capsys.readouterr()
    body = app(environ, lambda status, headers, exc_info=None: started.append(status))
    assert started == ["200 OK"]
    chunks = iter(body)
    assert inspect.isgenerator(chunks)
    assert next(chunks) == b": connected\n\n"
    assert hub.watched_streams() == watched + 1
    body.close()
    assert hub.watched_streams() == watched
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (logged,) = [line for line in lines if line.get("logger") == "backend.request"]
    assert logged["path"].endswith("/stream") and logged["status"] == 200 and logged["duration_ms"] >= 0


def test_head_of_a_stream_answers_headers_and_holds_nothing(client, app):
    conversation_id, token = visitor(client)
    hub = app.extensions["sse_hub"]
    watched = hub.watched_streams()
    response = client.head(
        f"{API}/conversations/{conversation_id}/stream", headers={"X-Visitor-Token": token}
    )
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.get_data() == b""
    assert hub.watched_streams() == watched
