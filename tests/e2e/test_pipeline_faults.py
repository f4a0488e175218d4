"""The run pipeline when things go wrong: cancels, LLM failures, a missing API key,
killed processes and duplicated task deliveries, all with real processes.

The tests that kill or replace the worker come last and always leave the stack
with one normal worker, so later tests (in any file) still have one.
"""

import signal
import time
import uuid

import pytest

from backend.extensions import db
from backend.models import Conversation
from backend.services import runs
from backend.services.messages import append_message
from tests.e2e.chat import Visitor, after_deltas, is_end_of, names, run_events, text_of
from tests.factories import make_connector, make_workspace
from tests.fake_groq import Reply

BOOKING_LINK = "https://calendly.com/acme/intro"


def booking_workspace():
    workspace = make_workspace()
    make_connector(workspace, is_active=True, config={"link": BOOKING_LINK})
    return workspace


def test_cancel_mid_stream_keeps_the_partial_reply(stack, groq):
    groq.default = Reply.tokens(200, delay=0.02)
    visitor = Visitor(stack, make_workspace().handle)
    posted = visitor.send("talk for a while")
    run_id = posted["run"]["id"]
    stream = visitor.stream(posted["stream_cursor"])
    try:
        events = stream.events_until(after_deltas(5))
        response = visitor.cancel(run_id)
        assert response.status_code == 202, response.text
        assert response.json()["id"] == run_id
        events += stream.events_until(is_end_of(run_id))
    finally:
        stream.close()

    end = events[-1].data
    assert end["status"] == "cancelled"
    assert names(events)[0] == "message_start" and "error" not in names(events)
    assert end["full_text"] == text_of(events)
    assert 0 < len(end["full_text"]) < len(" ".join(f"tok{i}" for i in range(200)))
    run = visitor.wait_run(run_id)
    assert run["status"] == "cancelled" and run["finished_at"]
    reply = visitor.messages()[-1]
    assert reply["role"] == "assistant" and reply["content"] == end["full_text"]
    assert run["reply_message_id"] == reply["id"]

    again = visitor.cancel(run_id)
    assert again.status_code == 409 and isinstance(again.json()["detail"], str)


def test_cancel_while_the_model_is_silent_stops_the_run_promptly(stack, groq):
    groq.default = Reply.text("Hello there, this arrives too late", first_delay=4)
    visitor = Visitor(stack, make_workspace().handle)
    posted = visitor.send("think hard")
    run_id = posted["run"]["id"]
    stream = visitor.stream(posted["stream_cursor"])
    try:
        events = stream.events_until(lambda e: e.event == "message_start")
        cancelled_at = time.monotonic()
        assert visitor.cancel(run_id).status_code == 202
        events += stream.events_until(is_end_of(run_id))
        ended_after = time.monotonic() - cancelled_at
    finally:
        stream.close()
    end = events[-1].data
    assert end["status"] == "cancelled" and end["full_text"] == "" and text_of(events) == ""
    assert ended_after < 2.5, f"the run ended {ended_after:.1f}s after the cancel"
    run = visitor.wait_run(run_id)
    assert run["status"] == "cancelled" and run["reply_message_id"] is None
    assert [m["role"] for m in visitor.messages()] == ["user"]


def test_cancel_after_the_run_finished_is_409(stack, groq):
    visitor = Visitor(stack, make_workspace().handle)
    run_id = visitor.send("hello")["run"]["id"]
    assert visitor.wait_run(run_id)["status"] == "completed"
    response = visitor.cancel(run_id)
    assert response.status_code == 409, response.text
    assert "completed" in response.json()["detail"]
    assert visitor.run(run_id)["status"] == "completed"


def test_cancel_a_queued_run_ends_it_at_once_and_the_next_run_still_runs(stack, groq):
    groq.when("slow one", Reply.tokens(60, delay=0.02))
    visitor = Visitor(stack, make_workspace().handle)
    one = visitor.send("slow one")
    stream = visitor.stream(one["stream_cursor"])
    try:
        stream.events_until(after_deltas(2))
        two = visitor.send("never answered")
        response = visitor.cancel(two["run"]["id"])
        assert response.status_code == 202 and response.json()["status"] == "cancelled"
        three = visitor.send("third one")
        events = stream.events_until(is_end_of(three["run"]["id"]))
    finally:
        stream.close()

    ends = {e.data["run_id"]: e.data for e in events if e.event == "message_end"}
    assert ends[two["run"]["id"]]["status"] == "cancelled" and ends[two["run"]["id"]]["full_text"] == ""
    assert ends[one["run"]["id"]]["status"] == ends[three["run"]["id"]]["status"] == "completed"
    assert not run_events(events, two["run"]["id"])[:-1]  # nothing but its message_end
    assert [b["messages"][-1]["content"] for b in groq.requests] == ["slow one", "third one"]
    assert visitor.run(two["run"]["id"])["status"] == "cancelled"


@pytest.mark.parametrize(
    "reply, code",
    [
        (Reply.drop_after(5, delay=0.01), "llm_connection"),
        (Reply.stream_error(after=5, status=500, delay=0.01), None),
    ],
    ids=["connection-dropped", "in-stream-error"],
)
def test_llm_failure_mid_stream_fails_the_run_and_keeps_what_was_streamed(stack, groq, reply, code):
    groq.default = reply
    visitor = Visitor(stack, booking_workspace().handle)
    posted = visitor.send("answer me")
    run_id = posted["run"]["id"]
    stream = visitor.stream(posted["stream_cursor"])
    events = stream.events_until(is_end_of(run_id))
    stream.close()

    kinds = names(events)
    assert kinds == ["message_start"] + ["delta"] * 5 + ["error", "message_end"]
    error, end = events[-2].data, events[-1].data
    assert error["run_id"] == run_id and error["code"] and error["message"]
    assert end["status"] == "failed" and end["degraded"] is False
    assert end["full_text"] == text_of(events) == "tok0 tok1 tok2 tok3 tok4"
    run = visitor.wait_run(run_id)
    assert run["status"] == "failed" and run["error"]["code"] == error["code"]
    if code:
        assert error["code"] == code
    assert visitor.messages()[-1]["content"] == end["full_text"]
    assert len(groq.requests) == 1  # text had reached the visitor: no retry


@pytest.mark.parametrize("status, code", [(500, "llm_http_500"), (429, "rate_limited")])
def test_llm_error_before_any_token_gives_a_degraded_reply(stack, groq, status, code):
    groq.default = Reply.error(status)
    visitor = Visitor(stack, booking_workspace().handle)
    posted = visitor.send("can I book?")
    run_id = posted["run"]["id"]
    stream = visitor.stream(posted["stream_cursor"])
    events = stream.events_until(is_end_of(run_id))
    stream.close()

    kinds = names(events)
    assert kinds[0] == "message_start" and kinds[-1] == "message_end" and set(kinds[1:-1]) == {"delta"}
    end = events[-1].data
    assert end["status"] == "completed" and end["degraded"] is True
    assert BOOKING_LINK in end["full_text"] and text_of(events) == end["full_text"]
    run = visitor.wait_run(run_id)
    assert run["status"] == "completed" and run["degraded"] is True
    assert run["error"]["code"] == code
    reply = visitor.messages()[-1]
    assert reply["content"] == end["full_text"] and reply["meta"]["degraded"] is True
    assert len(groq.requests) == 3  # the first try and two retries, then degraded


def test_duplicated_task_delivery_of_a_finished_run_changes_nothing(stack, groq):
    visitor = Visitor(stack, make_workspace().handle)
    posted = visitor.send("just once")
    run_id = posted["run"]["id"]
    stream = visitor.stream(posted["stream_cursor"])
    try:
        events = stream.events_until(is_end_of(run_id))
        stack.wait_task_done(stack.send_task(run_id))
        later = visitor.drain(stream)  # whatever the redelivered task published
    finally:
        stream.close()
    assert later == [], later
    assert names(events).count("message_start") == 1
    assert [m["role"] for m in visitor.messages()] == ["user", "assistant"]
    assert visitor.run(run_id)["status"] == "completed"
    assert len(groq.requests) == 1


def test_a_run_enqueued_three_times_runs_once(stack, groq):
    groq.default = Reply.tokens(20, delay=0.01)
    visitor = Visitor(stack, make_workspace().handle)
    posted = visitor.send("only one answer")
    run_id = posted["run"]["id"]
    extra = [stack.send_task(run_id), stack.send_task(run_id)]
    stream = visitor.stream(posted["stream_cursor"])
    try:
        events = stream.events_until(is_end_of(run_id))
        for task_id in extra:
            stack.wait_task_done(task_id)
        events += visitor.drain(stream)  # whatever the two extra deliveries published
    finally:
        stream.close()
    assert names(events).count("message_start") == 1 and names(events).count("message_end") == 1
    assert names(events)[-1] == "message_end"
    assert text_of(events) == events[-1].data["full_text"]
    assert [m["role"] for m in visitor.messages()] == ["user", "assistant"]
    assert len(groq.requests) == 1


def test_a_queued_run_whose_task_was_lost_is_sent_again(stack, groq):
    """The broker lost the task (nothing was enqueued): the workers' recovery loop finds
    the run still queued after RUN_STALE_SECONDS and sends it again."""
    visitor = Visitor(stack, make_workspace().handle)
    conversation = db.session.get(Conversation, uuid.UUID(visitor.conversation_id))
    message = append_message(conversation, "user", "did anyone get this?")
    run = runs.create_run(conversation, message)
    db.session.commit()  # committed, never enqueued
    run_id = str(run.id)

    stream = visitor.stream("0-0")
    events = stream.events_until(is_end_of(run_id), timeout=30)
    stream.close()
    assert names(events)[0] == "message_start"
    assert events[-1].data["full_text"] == "You said: did anyone get this?"
    assert visitor.wait_run(run_id)["status"] == "completed"
    assert [m["role"] for m in visitor.messages()] == ["user", "assistant"]


def test_web_killed_mid_stream_resume_on_a_new_web_process(stack, groq):
    groq.default = Reply.tokens(150, delay=0.03)
    visitor = Visitor(stack, make_workspace().handle)
    posted = visitor.send("keep talking")
    run_id = posted["run"]["id"]
    stream = visitor.stream(posted["stream_cursor"])
    before = stream.events_until(after_deltas(5))
    stack.restart_web()  # SIGKILL, then a new gunicorn on another port
    stream.close()
    resumed = visitor.stream(before[-1].id, header=True)
    after = resumed.events_until(is_end_of(run_id))
    resumed.close()
    whole = visitor.stream(posted["stream_cursor"])
    reference = whole.events_until(is_end_of(run_id))
    whole.close()

    assert [e.id for e in before + after] == [e.id for e in reference]
    assert text_of(before + after) == after[-1].data["full_text"]
    assert after[-1].data["full_text"] == " ".join(f"tok{i}" for i in range(150))
    assert visitor.messages()[-1]["content"] == after[-1].data["full_text"]


def test_a_backlog_queued_while_no_worker_ran_is_drained_and_acked_at_start(stack, groq):
    """A deploy: runs (and stale duplicate deliveries) pile up while no worker is up; the
    next worker runs them and acks every task (kombu's pool once ran out doing that)."""
    visitor = Visitor(stack, make_workspace().handle)
    done = visitor.send("answered before the restart")["run"]["id"]
    visitor.wait_run(done)
    stack.kill_workers(signal.SIGTERM)
    try:
        duplicates = [stack.send_task(done) for _ in range(100)]
        posted = visitor.send("sent while no worker runs")
        worker = stack.add_worker()
        stream = visitor.stream(posted["stream_cursor"])
        events = stream.events_until(is_end_of(posted["run"]["id"]))
        stream.close()
        for task_id in duplicates:
            stack.wait_task_done(task_id)
    finally:
        stack.ensure_worker()
    assert events[-1].data["full_text"] == "You said: sent while no worker runs"
    assert [m["role"] for m in visitor.messages()] == ["user", "assistant"] * 2
    assert "Couldn't ack" not in worker.output()


def test_missing_api_key_ends_the_run_visibly_with_a_degraded_reply(stack, groq):
    visitor = Visitor(stack, booking_workspace().handle)
    stack.kill_workers(signal.SIGTERM)
    try:
        stack.add_worker(GROQ_API_KEY=None)
        posted = visitor.send("is anyone there?")
        run_id = posted["run"]["id"]
        stream = visitor.stream(posted["stream_cursor"])
        events = stream.events_until(is_end_of(run_id))
        stream.close()
    finally:
        stack.kill_workers(signal.SIGTERM)
        stack.ensure_worker()

    end = events[-1].data
    assert end["status"] == "completed" and end["degraded"] is True
    assert BOOKING_LINK in end["full_text"] and text_of(events) == end["full_text"]
    run = visitor.run(run_id)
    assert run["status"] == "completed" and run["degraded"] is True
    assert run["error"]["code"] == "no_api_key"
    assert groq.requests == []


def test_worker_killed_mid_run_is_failed_visibly_by_another_worker(stack, groq):
    groq.when("a very long answer", Reply.tokens(400, delay=0.03))
    visitor = Visitor(stack, make_workspace().handle)
    posted = visitor.send("a very long answer")
    run_id = posted["run"]["id"]
    stream = visitor.stream(posted["stream_cursor"], timeout=30)
    try:
        events = stream.events_until(after_deltas(5))
        queued = visitor.send("and a short one after it")["run"]["id"]  # waits behind the first
        stack.kill_workers(signal.SIGKILL)
        stack.add_worker()
        events += stream.events_until(is_end_of(run_id), timeout=60)
        later = stream.events_until(is_end_of(queued), timeout=30)
    finally:
        stream.close()
        stack.ensure_worker()

    kinds = names(events)
    assert kinds[-2:] == ["error", "message_end"]
    assert events[-2].data["code"] == "worker_lost"
    end = events[-1].data
    assert end["status"] == "failed"
    assert end["full_text"] == text_of(events) and end["full_text"].startswith("tok0 tok1 tok2 tok3 tok4")
    run = visitor.run(run_id)
    assert run["status"] == "failed" and run["error"]["code"] == "worker_lost"
    # The run queued behind it is not stuck, and its model request holds the partial reply.
    assert later[-1].data["status"] == "completed" and names(later)[0] == "message_start"
    assert [(m["role"], m["content"]) for m in groq.requests[-1]["messages"][1:]] == [
        ("user", "a very long answer"),
        ("assistant", end["full_text"]),
        ("user", "and a short one after it"),
    ]
    # A late redelivery of the dead worker's task changes nothing.
    stack.wait_task_done(stack.send_task(run_id))
    replies = [m["content"] for m in visitor.messages() if m["role"] == "assistant"]
    assert replies == [end["full_text"], "You said: and a short one after it"]
    assert visitor.run(run_id)["status"] == "failed"
