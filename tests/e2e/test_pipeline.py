"""The run pipeline end to end: gunicorn(gevent) + Celery worker + PostgreSQL + Redis + the
real groq SDK against the fake Groq server.

Every assertion is on what a visitor (or the model provider) observes: the event
stream, the REST answers, the saved messages and the requests Groq received.
"""

import threading
import uuid

import pytest
import requests

from backend.extensions import db, redis_client
from backend.models import AgentRun, Conversation
from backend.models.types import utcnow
from backend.services.messages import append_message
from backend.services.runs import reply_message_id
from backend.streams import RunPublisher, stream_key
from tests.e2e.chat import Visitor, after_deltas, is_end_of, names, run_events, text_of
from tests.factories import make_connector, make_workspace
from tests.fake_groq import Reply

BOOKING_LINK = "https://calendly.com/acme/intro"


def full_read(visitor: Visitor, cursor: str, run_id: str) -> list:
    """The whole run, read in one go from the cursor its post returned."""
    stream = visitor.stream(cursor)
    try:
        return run_events(stream.events_until(is_end_of(run_id)), run_id)
    finally:
        stream.close()


def test_happy_path_event_order_and_text_equality(stack, groq):
    workspace = make_workspace()
    groq.default = Reply.text("Hello! We are open from nine to five on weekdays.", delay=0.002)
    visitor = Visitor(stack, workspace.handle)
    posted = visitor.send("When are you open?")
    run_id = posted["run"]["id"]
    assert posted["run"]["status"] in ("queued", "running")
    stream = visitor.stream(posted["stream_cursor"])
    events = run_events(stream.events_until(is_end_of(run_id)), run_id)
    stream.close()
    headers = stream.response.headers
    assert stream.response.status_code == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["Cache-Control"] == "no-cache" and headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in headers

    names = [e.event for e in events]
    assert names[0] == "message_start" and names[-1] == "message_end"
    assert set(names[1:-1]) == {"delta"}
    end = events[-1].data
    assert end["status"] == "completed" and end["degraded"] is False
    assert text_of(events) == end["full_text"] == "Hello! We are open from nine to five on weekdays."
    reply_id = events[0].data["message_id"]
    saved = visitor.messages()
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert saved[1]["id"] == reply_id and saved[1]["content"] == end["full_text"]
    assert saved[1]["run_id"] == run_id
    run = visitor.run(run_id)
    assert run["status"] == "completed" and run["reply_message_id"] == reply_id
    ids = [e.id for e in events]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("via", ["header", "query"])
def test_resume_mid_run_with_last_event_id_has_no_gap_and_no_duplicate(stack, groq, via):
    workspace = make_workspace()
    groq.default = Reply.tokens(40, delay=0.02)
    visitor = Visitor(stack, workspace.handle)
    posted = visitor.send("Tell me a long story")
    run_id = posted["run"]["id"]

    first = visitor.stream(posted["stream_cursor"])
    half = first.events_until(after_deltas(10))
    first.close()
    assert "message_end" not in names(half)  # the first connection really left mid-run

    second = visitor.stream(half[-1].id, header=(via == "header"))
    rest = second.events_until(is_end_of(run_id))
    second.close()

    whole = full_read(visitor, posted["stream_cursor"], run_id)
    resumed = half + rest
    assert [e.id for e in resumed] == [e.id for e in whole]
    assert names(resumed)[0] == "message_start" and names(resumed)[-1] == "message_end"
    assert text_of(resumed) == rest[-1].data["full_text"] == " ".join(f"tok{i}" for i in range(40))


def test_join_after_the_run_finished_with_a_cursor_gets_the_remaining_events(stack, groq):
    workspace = make_workspace()
    visitor = Visitor(stack, workspace.handle)
    posted = visitor.send("hello there, how are you today")
    run_id = posted["run"]["id"]
    visitor.wait_run(run_id)

    whole = full_read(visitor, posted["stream_cursor"], run_id)
    assert names(whole)[0] == "message_start" and names(whole)[-1] == "message_end"
    assert text_of(whole) == whole[-1].data["full_text"] == "You said: hello there, how are you today"
    middle = 3
    stream = visitor.stream(whole[middle].id)
    rest = stream.events_until(is_end_of(run_id))
    stream.close()
    assert [e.id for e in rest] == [e.id for e in whole[middle + 1 :]]


def test_join_after_the_run_finished_without_a_cursor_is_live(stack, groq):
    workspace = make_workspace()
    visitor = Visitor(stack, workspace.handle)
    first = visitor.send("first question")
    visitor.wait_run(first["run"]["id"])

    stream = visitor.stream()
    try:
        idle = stream.until_comment("ping")  # the connection is alive...
        assert {e.event for e in idle} == {":comment"}, idle  # ...with nothing of the finished run
        second = visitor.send("second question")
        run_id = second["run"]["id"]
        events = stream.events_until(is_end_of(run_id))
    finally:
        stream.close()
    # Entries arrive in stream order, and the finished run's come before the second's: had
    # any of them been sent, it would be here.
    assert {e.data["run_id"] for e in events} == {run_id}
    assert names(events)[0] == "message_start"
    assert events[-1].data["full_text"] == text_of(events) == "You said: second question"


def test_join_mid_run_without_a_cursor_starts_at_the_runs_first_event(stack, groq):
    workspace = make_workspace()
    visitor = Visitor(stack, workspace.handle)
    warmup = visitor.send("an earlier question")  # a finished run before: must not be replayed
    visitor.wait_run(warmup["run"]["id"])
    groq.default = Reply.tokens(40, delay=0.02)
    posted = visitor.send("a long answer please")
    run_id = posted["run"]["id"]

    watcher = visitor.stream(posted["stream_cursor"])
    watcher.events_until(after_deltas(8))
    watcher.close()
    late = visitor.stream()
    events = late.events_until(is_end_of(run_id))
    late.close()

    assert names(events)[0] == "message_start" and events[0].data["run_id"] == run_id
    assert [e.id for e in events] == [e.id for e in full_read(visitor, posted["stream_cursor"], run_id)]
    assert text_of(events) == events[-1].data["full_text"]


def test_join_between_message_start_and_its_recording_still_gets_message_start(stack, groq):
    """The worker publishes message_start and records its id on the run only when the run
    ends: a visitor joining in between must not start after it. Made by hand here."""
    workspace = make_workspace()
    visitor = Visitor(stack, workspace.handle)
    conversation = db.session.get(Conversation, uuid.UUID(visitor.conversation_id))
    message = append_message(conversation, "user", "hi")
    run = AgentRun(
        id=uuid.uuid4(),
        conversation_id=conversation.id,
        user_message_id=message.id,
        status="running",
        created_at=message.timestamp,
        started_at=utcnow(),
        heartbeat_at=utcnow(),
    )
    db.session.add(run)
    db.session.commit()
    publisher = RunPublisher(conversation.id, run.id, reply_message_id(run.id))
    start_id = publisher.message_start()  # published; first_event_id not recorded yet

    stream = visitor.stream()
    try:
        stream.until_comment("connected", timeout=10)  # subscribed before the run goes on
        publisher.delta("Hi")
        publisher.message_end("Hi", "completed", False, None)
        events = stream.events_until(is_end_of(str(run.id)), timeout=10)
    finally:
        stream.close()
        run.status, run.finished_at = "completed", utcnow()  # finished, as the worker would
        db.session.commit()
    assert [e.event for e in events] == ["message_start", "delta", "message_end"]
    assert events[0].id == start_id


def test_cursor_past_what_is_kept_yields_one_resync_then_live(stack, groq):
    workspace = make_workspace()
    visitor = Visitor(stack, workspace.handle)
    posted = visitor.send("first")
    run_id = posted["run"]["id"]
    old = full_read(visitor, posted["stream_cursor"], run_id)
    redis_client().delete(stream_key(visitor.conversation_id))  # as if its TTL ran out

    stream = visitor.stream(old[2].id)
    try:
        first = stream.events_until(lambda e: True, timeout=10)
        assert first[0].event == "resync" and first[0].data["reason"]
        second = visitor.send("second")["run"]["id"]
        events = stream.events_until(is_end_of(second))
    finally:
        stream.close()
    assert names(events)[0] == "message_start" and {e.data["run_id"] for e in events} == {second}
    assert "resync" not in names(events)

    bad = requests.get(
        visitor.url("/stream"), params={"visitor_token": visitor.token, "last_event_id": "x"}, timeout=10
    )
    assert bad.status_code == 422 and isinstance(bad.json()["detail"], str)


def test_back_to_back_messages_run_one_at_a_time_in_order(stack, groq):
    workspace = make_workspace()
    first_answer = "Sure: " + " ".join(f"word{i}" for i in range(30))
    groq.when("first message", Reply.text(first_answer, delay=0.03))
    visitor = Visitor(stack, workspace.handle)
    one = visitor.send("first message")
    stream = visitor.stream(one["stream_cursor"])
    try:
        stream.events_until(after_deltas(3))
        two = visitor.send("second message")
        run_one, run_two = one["run"]["id"], two["run"]["id"]
        assert visitor.run(run_one)["status"] == "running"  # really posted while the first streams
        events = stream.events_until(is_end_of(run_two))
    finally:
        stream.close()

    order = [(e.event, e.data["run_id"]) for e in events if e.event in ("message_start", "message_end")]
    assert order == [("message_end", run_one), ("message_start", run_two), ("message_end", run_two)]
    r1, r2 = visitor.run(run_one), visitor.run(run_two)
    assert r1["status"] == r2["status"] == "completed"
    assert r2["started_at"] >= r1["finished_at"]

    chats = [[(m["role"], m["content"]) for m in body["messages"][1:]] for body in groq.requests]
    assert chats == [
        [("user", "first message")],
        [("user", "first message"), ("assistant", first_answer), ("user", "second message")],
    ]
    saved = [(m["role"], m["content"]) for m in visitor.messages()]
    assert saved[0] == ("user", "first message")
    assert ("assistant", first_answer) in saved and ("assistant", "You said: second message") in saved


def test_same_idempotency_key_twice_replays_the_message_and_run(stack, groq):
    workspace = make_workspace()
    visitor = Visitor(stack, workspace.handle)
    key = str(uuid.uuid4())
    first = visitor.post("book me in", idempotency_key=key)
    second = visitor.post("book me in", idempotency_key=key)
    assert (first.status_code, second.status_code) == (201, 200), (first.text, second.text)
    a, b = first.json(), second.json()
    assert a["message"]["id"] == b["message"]["id"] and a["run"]["id"] == b["run"]["id"]
    visitor.wait_run(a["run"]["id"])
    again = visitor.post("book me in", idempotency_key=key)  # also after the run finished
    assert again.status_code == 200 and again.json()["run"]["id"] == a["run"]["id"]

    assert [m["role"] for m in visitor.messages()] == ["user", "assistant"]
    assert len(groq.requests) == 1
    reused = visitor.post("a different message", idempotency_key=key)
    assert reused.status_code == 409 and isinstance(reused.json()["detail"], str)


def test_concurrent_posts_with_one_idempotency_key_make_one_message_and_one_run(stack, groq):
    workspace = make_workspace()
    visitor = Visitor(stack, workspace.handle)
    key = str(uuid.uuid4())
    barrier = threading.Barrier(4)
    results: list = []

    def post():
        barrier.wait()
        results.append(visitor.post("same message, sent four times", idempotency_key=key))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert sorted(r.status_code for r in results) == [200, 200, 200, 201], [r.text for r in results]
    assert len({r.json()["message"]["id"] for r in results}) == 1
    run_ids = {r.json()["run"]["id"] for r in results}
    assert len(run_ids) == 1
    visitor.wait_run(run_ids.pop())
    saved = visitor.messages()
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert len(groq.requests) == 1


def test_tool_call_streams_tool_events_then_the_answer_with_the_link(stack, groq):
    workspace = make_workspace()
    make_connector(workspace, is_active=True, config={"link": BOOKING_LINK})
    groq.enqueue(Reply.tool_call("get_booking_link", {}))
    visitor = Visitor(stack, workspace.handle)
    posted = visitor.send("I want to book a session")
    run_id = posted["run"]["id"]
    events = full_read(visitor, posted["stream_cursor"], run_id)

    kinds = names(events)
    assert kinds[:3] == ["message_start", "tool_call", "tool_result"]
    assert kinds[-1] == "message_end" and set(kinds[3:-1]) == {"delta"} and len(kinds) > 4
    call, result, end = events[1].data, events[2].data, events[-1].data
    assert call["tool"] == result["tool"] == "get_booking_link" and call["id"] == result["id"]
    assert result["status"] == "ok" and BOOKING_LINK in str(result["data"])
    assert end["status"] == "completed" and BOOKING_LINK in end["full_text"]
    assert text_of(events) == end["full_text"]
    assert visitor.messages()[-1]["content"] == end["full_text"]
    follow_up = groq.requests[1]["messages"]
    assert follow_up[-1]["role"] == "tool" and BOOKING_LINK in follow_up[-1]["content"]


def test_unknown_tool_comes_back_as_an_error_result_and_the_answer_goes_on(stack, groq):
    groq.enqueue(Reply.tool_call("delete_everything", {"really": True}))
    visitor = Visitor(stack, make_workspace().handle)
    posted = visitor.send("do something odd")
    events = full_read(visitor, posted["stream_cursor"], posted["run"]["id"])
    assert names(events)[:3] == ["message_start", "tool_call", "tool_result"]
    result = events[2].data
    assert result["status"] == "error" and result["error"] and result["tool"] == "delete_everything"
    end = events[-1].data
    assert end["status"] == "completed" and end["full_text"].startswith("Here is what I found: ")
    assert text_of(events) == end["full_text"]


def test_tool_use_failed_from_groq_is_retried_without_tools(stack, groq):
    groq.enqueue(Reply.error(400, code="tool_use_failed"))
    visitor = Visitor(stack, make_workspace().handle)
    posted = visitor.send("book something")
    events = full_read(visitor, posted["stream_cursor"], posted["run"]["id"])
    end = events[-1].data
    assert end["status"] == "completed" and end["degraded"] is False
    assert end["full_text"] == text_of(events) == "You said: book something"
    assert "tools" in groq.requests[0] and "tools" not in groq.requests[1]


def test_every_conversation_route_needs_the_token_and_an_existing_conversation(stack, groq):
    workspace = make_workspace()
    visitor = Visitor(stack, workspace.handle)
    other = Visitor(stack, workspace.handle)
    run_id = visitor.send("hello")["run"]["id"]
    visitor.wait_run(run_id)

    def routes(conversation_id, run):
        base = stack.api(f"/public/conversations/{conversation_id}")
        return [
            ("GET", f"{base}/messages", None),
            ("POST", f"{base}/messages", {"content": "hi again"}),
            ("GET", f"{base}/stream", None),
            ("GET", f"{base}/runs/{run}", None),
            ("POST", f"{base}/runs/{run}/cancel", None),
        ]

    def call(method, url, body, headers=None, params=None):
        response = requests.request(method, url, json=body, headers=headers, params=params, timeout=10)
        assert response.headers["Content-Type"].startswith("application/json"), (method, url)
        return response

    for method, url, body in routes(visitor.conversation_id, run_id):
        for headers, params in [
            (None, None),
            ({"X-Visitor-Token": "wrong"}, None),
            (other.headers, None),
            (None, {"visitor_token": other.token}),
        ]:
            response = call(method, url, body, headers, params)
            assert response.status_code == 401, (method, url, headers, params, response.text)
            assert isinstance(response.json()["detail"], str)
    unknown = str(uuid.uuid4())
    for method, url, body in routes(unknown, run_id):
        response = call(method, url, body, visitor.headers)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["detail"] == "Conversation not found"
    for method, url, body in routes(visitor.conversation_id, str(uuid.uuid4()))[3:]:
        response = call(method, url, body, visitor.headers)
        assert response.status_code == 404 and response.json()["detail"] == "Run not found"
    # Nothing was posted by the rejected calls.
    assert [m["role"] for m in visitor.messages()] == ["user", "assistant"]


def test_two_tabs_on_one_conversation_see_the_same_events(stack, groq):
    groq.default = Reply.tokens(30, delay=0.01)
    visitor = Visitor(stack, make_workspace().handle)
    posted = visitor.send("hello from two tabs")
    run_id = posted["run"]["id"]
    tabs = [visitor.stream(posted["stream_cursor"]), visitor.stream()]
    try:
        seen = [tab.events_until(is_end_of(run_id)) for tab in tabs]
    finally:
        for tab in tabs:
            tab.close()
    assert [e.id for e in seen[0]] == [e.id for e in seen[1]]
    assert names(seen[0])[0] == "message_start"


def test_many_conversations_at_once_each_get_only_their_own_run(stack, groq):
    groq.default = Reply.echo(delay=0.01)
    workspace = make_workspace()
    visitors = [Visitor(stack, workspace.handle, name=f"V{i}") for i in range(8)]
    results: dict = {}

    def chat(i: int, visitor: Visitor) -> None:
        stream = visitor.stream()  # live, before posting
        try:
            posted = visitor.send(f"message number {i} from visitor {i}")
            results[i] = (posted["run"]["id"], stream.events_until(is_end_of(posted["run"]["id"])))
        finally:
            stream.close()

    threads = [threading.Thread(target=chat, args=(i, v)) for i, v in enumerate(visitors)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(8))
    for i, (run_id, events) in results.items():
        assert {e.data["run_id"] for e in events} == {run_id}
        assert names(events)[0] == "message_start"
        expected = f"You said: message number {i} from visitor {i}"
        assert text_of(events) == events[-1].data["full_text"] == expected
