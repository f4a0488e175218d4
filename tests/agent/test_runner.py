"""The run loop (backend/agent/runner.py) in-process: the real groq SDK against an
in-process fake Groq server, the real PostgreSQL and Redis, no Celery worker."""

import json
import threading
import time
import uuid

import pytest

from backend.agent.context import load_agent_context
from backend.agent.degraded import build_degraded_reply
from backend.agent.runner import execute_run
from backend.extensions import db, redis_client
from backend.models import Conversation, Workspace
from backend.services import runs
from backend.streams import cancel_key, stream_key
from tests.agent.factories import queue_message
from tests.factories import (
    assistant_replies,
    make_connector,
    make_conversation,
    make_service,
    make_workspace,
    reload_run,
)
from tests.fake_groq import Reply

BOOKING_LINK = "https://calendly.com/luz-yoga/intro"


# The run loop closes the session: fixtures hand out ids, not ORM objects.


@pytest.fixture
def workspace_id() -> uuid.UUID:
    workspace = make_workspace(public_name="Luz Yoga", tone="friendly")
    make_service(workspace, name="Hatha class", duration_minutes=60, starting_price="20.00")
    make_connector(workspace, config={"link": BOOKING_LINK}, is_active=True)
    return workspace.id


@pytest.fixture
def conversation_id(workspace_id) -> uuid.UUID:
    return make_conversation(db.session.get(Workspace, workspace_id), channel="web_public").id


stored_run = reload_run


replies = assistant_replies


def events(conversation_id, run_id=None) -> list[tuple[str, str, dict]]:
    out = []
    for entry_id, fields in redis_client().xrange(stream_key(conversation_id)):
        data = json.loads(fields["d"])
        if run_id is None or data.get("run_id") == str(run_id):
            out.append((entry_id, fields["e"], data))
    return out


def names(evs) -> list[str]:
    return [name for _, name, _ in evs]


def streamed_text(evs) -> str:
    return "".join(data["text_chunk"] for _, name, data in evs if name == "delta")


def time_saved(conversation_id) -> int:
    db.session.expire_all()
    return db.session.get(Conversation, conversation_id).human_time_saved_minutes


def tool_names(request: dict) -> list[str] | None:
    tools = request.get("tools")
    return None if tools is None else [t["function"]["name"] for t in tools]


# --- the happy path ------------------------------------------------------------------------


def test_completed_run_saves_the_reply_with_meta(app, groq, conversation_id):
    groq.default = Reply.text("We are open from nine to five.")
    run_id = queue_message(conversation_id)
    execute_run(run_id)

    run = stored_run(run_id)
    assert run.status == "completed" and run.degraded is False and run.error is None
    assert run.started_at is not None and run.finished_at >= run.started_at
    [reply] = replies(conversation_id)
    assert reply.content == "We are open from nine to five."
    assert reply.id == runs.reply_message_id(run_id) == run.reply_message_id
    assert reply.run_id == run_id

    meta = reply.meta
    assert meta["model"] == app.config["TEXT_MODEL_NAME"]
    [request] = groq.requests
    prompt_words = sum(len((m.get("content") or "").split()) for m in request["messages"])
    assert meta["usage"] == {
        "prompt_tokens": prompt_words,
        "completion_tokens": 7,  # the fake counts one token per streamed word
        "total_tokens": prompt_words + 7,
    }
    assert isinstance(meta["ttft_ms"], float) and meta["ttft_ms"] >= 0
    assert meta["latency_ms"] >= meta["ttft_ms"]
    assert meta["tool_calls"] == [] and meta["degraded"] is False

    # The request: streamed, with the tools, the system prompt first and the visitor's message last.
    assert request["stream"] is True and request["model"] == app.config["TEXT_MODEL_NAME"]
    assert tool_names(request) == ["list_services", "get_booking_link", "request_human"]
    assert request["messages"][0]["role"] == "system"
    assert request["messages"][-1] == {"role": "user", "content": "When are you open?"}

    # The stream: message_start naming the reply id, deltas, message_end with the same text.
    evs = events(conversation_id)
    assert names(evs)[0] == "message_start" and names(evs)[-1] == "message_end"
    assert set(names(evs)[1:-1]) == {"delta"}
    assert evs[0][2] == {"run_id": str(run_id), "message_id": str(reply.id)}
    assert run.first_event_id == evs[0][0]
    end = evs[-1][2]
    assert end["status"] == "completed" and end["degraded"] is False
    assert end["message_id"] == str(reply.id)
    assert streamed_text(evs) == end["full_text"] == reply.content
    assert end["usage"] == meta["usage"]
    assert redis_client().ttl(stream_key(conversation_id)) >= 3600


def test_each_completed_reply_adds_time_saved_and_history_holds_earlier_replies(app, groq, conversation_id):
    per_reply = app.config["TIME_SAVED_PER_REPLY_MINUTES"]
    assert time_saved(conversation_id) == 0
    first = queue_message(conversation_id, "Hi, do you have yoga?")
    second = queue_message(conversation_id, "How much is it?")
    execute_run(second)  # not its turn: the earlier run has not finished
    assert stored_run(second).status == "queued" and groq.requests == []

    execute_run(first)
    assert time_saved(conversation_id) == per_reply
    execute_run(second)
    assert time_saved(conversation_id) == 2 * per_reply

    chat = [(m["role"], m["content"]) for m in groq.requests[1]["messages"][1:]]
    assert chat == [
        ("user", "Hi, do you have yoga?"),
        ("assistant", "You said: Hi, do you have yoga?"),
        ("user", "How much is it?"),
    ]
    assert [r.content for r in replies(conversation_id)] == [
        "You said: Hi, do you have yoga?",
        "You said: How much is it?",
    ]


def test_a_second_delivery_is_a_no_op(groq, conversation_id):
    run_id = queue_message(conversation_id)
    execute_run(run_id)
    count = len(events(conversation_id))
    execute_run(run_id)
    assert len(groq.requests) == 1
    assert len(replies(conversation_id)) == 1
    assert len(events(conversation_id)) == count


def test_tool_call_round(groq, conversation_id):
    groq.enqueue(Reply.tool_call("get_booking_link", {"service_name": "Hatha class"}, id="call_abc"))
    run_id = queue_message(conversation_id, "Can I book a hatha class?")
    execute_run(run_id)

    evs = events(conversation_id)
    assert names(evs)[:3] == ["message_start", "tool_call", "tool_result"]
    assert evs[1][2] == {
        "run_id": str(run_id),
        "id": "call_abc",
        "tool": "get_booking_link",
        "args": {"service_name": "Hatha class"},
    }
    result = evs[2][2]
    assert result["id"] == "call_abc" and result["status"] == "ok" and result["error"] is None
    assert result["data"]["link"] == BOOKING_LINK

    # The follow-up request carries the assistant's tool call and the tool's answer.
    assert len(groq.requests) == 2
    follow_up = groq.requests[1]["messages"]
    assert follow_up[-2]["role"] == "assistant"
    assert follow_up[-2]["tool_calls"][0]["id"] == "call_abc"
    assert follow_up[-1]["role"] == "tool" and follow_up[-1]["tool_call_id"] == "call_abc"
    [reply] = replies(conversation_id)
    assert BOOKING_LINK in reply.content
    assert reply.meta["tool_calls"] == ["get_booking_link"]
    # Usage adds up both rounds.
    assert reply.meta["usage"]["completion_tokens"] == 1 + len(reply.content.split())
    assert stored_run(run_id).status == "completed"


def test_tool_rounds_are_capped(app, groq, conversation_id, workspace_id, monkeypatch):
    monkeypatch.setitem(app.config, "AGENT_MAX_TOOL_ROUNDS", 2)
    groq.default = Reply.tool_call("list_services")  # a model that never stops calling tools
    run_id = queue_message(conversation_id, "What do you offer?")
    execute_run(run_id)

    assert len(groq.requests) == 3
    assert [tool_names(r) is not None for r in groq.requests] == [True, True, False]
    evs = events(conversation_id, run_id)
    # Only the calls made while tools were offered are executed.
    assert names(evs).count("tool_call") == 2 == names(evs).count("tool_result")
    assert names(evs)[-1] == "message_end"
    run = stored_run(run_id)
    assert run.status == "completed"
    # The model never said anything: the visitor still gets an answer, from the workspace's data.
    assert run.degraded is True and run.error["code"] == "empty_reply"
    [reply] = replies(conversation_id)
    assert reply.content == build_degraded_reply(load_agent_context(workspace_id))
    assert reply.content == evs[-1][2]["full_text"] == streamed_text(evs)
    assert reply.meta["tool_calls"] == ["list_services", "list_services"]


def test_tool_round_then_text_after_the_cap(app, groq, conversation_id, monkeypatch):
    monkeypatch.setitem(app.config, "AGENT_MAX_TOOL_ROUNDS", 1)
    groq.enqueue(Reply.tool_call("list_services"), Reply.text("We offer Hatha."))
    run_id = queue_message(conversation_id, "What do you offer?")
    execute_run(run_id)
    assert [tool_names(r) is not None for r in groq.requests] == [True, False]
    run = stored_run(run_id)
    assert run.status == "completed" and run.degraded is False
    assert [r.content for r in replies(conversation_id)] == ["We offer Hatha."]


def test_empty_model_reply_still_answers(groq, conversation_id, workspace_id):
    groq.default = Reply.text("")
    run_id = queue_message(conversation_id)
    execute_run(run_id)
    run = stored_run(run_id)
    assert run.status == "completed" and run.degraded is True
    [reply] = replies(conversation_id)
    evs = events(conversation_id, run_id)
    assert reply.content == build_degraded_reply(load_agent_context(workspace_id))
    assert reply.content == evs[-1][2]["full_text"] == streamed_text(evs)


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"), [(500, "llm_http_500"), (503, "llm_http_503"), (429, "rate_limited")]
)
def test_error_before_the_first_token_is_retried_then_degraded(
    groq, conversation_id, workspace_id, status, code
):
    groq.default = Reply.error(status)
    run_id = queue_message(conversation_id)
    execute_run(run_id)

    assert len(groq.requests) == 2  # GROQ_MAX_RETRIES=1: one retry
    run = stored_run(run_id)
    assert run.status == "completed" and run.degraded is True
    assert run.error["code"] == code and run.error["message"]
    [reply] = replies(conversation_id)
    expected = build_degraded_reply(load_agent_context(workspace_id))
    assert reply.content == expected and BOOKING_LINK in expected
    assert reply.meta["degraded"] is True
    evs = events(conversation_id, run_id)
    assert names(evs)[0] == "message_start" and names(evs)[-1] == "message_end"
    assert "error" not in names(evs)
    end = evs[-1][2]
    assert end["degraded"] is True and end["status"] == "completed"
    assert streamed_text(evs) == end["full_text"] == expected


def test_error_then_success_is_just_a_retry(groq, conversation_id):
    groq.enqueue(Reply.error(500), Reply.text("Recovered fine"))
    run_id = queue_message(conversation_id)
    execute_run(run_id)
    assert len(groq.requests) == 2
    run = stored_run(run_id)
    assert run.status == "completed" and run.degraded is False and run.error is None
    assert [r.content for r in replies(conversation_id)] == ["Recovered fine"]


def test_non_retryable_error_is_degraded_at_once(groq, conversation_id):
    groq.default = Reply.error(401)
    run_id = queue_message(conversation_id)
    execute_run(run_id)
    assert len(groq.requests) == 1
    run = stored_run(run_id)
    assert run.status == "completed" and run.degraded and run.error["code"] == "auth_failed"


def test_no_api_key_is_degraded_without_a_request(app, groq, conversation_id, monkeypatch):
    monkeypatch.setitem(app.config, "GROQ_API_KEY", None)
    run_id = queue_message(conversation_id)
    execute_run(run_id)
    assert groq.requests == []
    run = stored_run(run_id)
    assert run.status == "completed" and run.degraded and run.error["code"] == "no_api_key"
    assert BOOKING_LINK in replies(conversation_id)[0].content


def test_tool_use_failed_is_retried_once_without_tools(groq, conversation_id):
    groq.enqueue(Reply.error(400, code="tool_use_failed"), Reply.text("Without tools then"))
    run_id = queue_message(conversation_id)
    execute_run(run_id)
    assert len(groq.requests) == 2
    assert tool_names(groq.requests[0]) == ["list_services", "get_booking_link", "request_human"]
    assert "tools" not in groq.requests[1] and "tool_choice" not in groq.requests[1]
    run = stored_run(run_id)
    assert run.status == "completed" and run.degraded is False
    assert [r.content for r in replies(conversation_id)] == ["Without tools then"]


def test_tool_use_failed_twice_is_degraded(groq, conversation_id):
    groq.default = Reply.error(400, code="tool_use_failed")
    run_id = queue_message(conversation_id)
    execute_run(run_id)
    assert len(groq.requests) == 2
    assert "tools" not in groq.requests[1]
    run = stored_run(run_id)
    assert run.status == "completed" and run.degraded is True and run.error["code"] == "llm_http_400"


def test_mid_stream_drop_fails_with_the_partial_text(groq, conversation_id):
    groq.default = Reply.drop_after(3, text="one two three four five")
    run_id = queue_message(conversation_id)
    execute_run(run_id)

    assert len(groq.requests) == 1  # text reached the visitor: no retry (it would repeat it)
    run = stored_run(run_id)
    assert run.status == "failed" and run.degraded is False
    assert run.error["code"] in ("llm_connection", "llm_error") and run.error["message"]
    [reply] = replies(conversation_id)
    assert reply.content == "one two three"
    evs = events(conversation_id, run_id)
    assert names(evs)[-2:] == ["error", "message_end"]
    assert evs[-2][2] == {"run_id": str(run_id), "code": run.error["code"], "message": run.error["message"]}
    end = evs[-1][2]
    assert end["status"] == "failed" and end["full_text"] == "one two three" == streamed_text(evs)
    assert time_saved(conversation_id) == 0


def test_in_stream_error_after_text_fails_with_the_partial_text(groq, conversation_id):
    groq.default = Reply.stream_error(after=2, status=500, text="alpha beta gamma")
    run_id = queue_message(conversation_id)
    execute_run(run_id)
    run = stored_run(run_id)
    assert run.status == "failed" and run.error is not None
    assert [r.content for r in replies(conversation_id)] == ["alpha beta"]
    assert names(events(conversation_id, run_id))[-2:] == ["error", "message_end"]


# --- cancelling --------------------------------------------------------------------------------


def test_cancel_during_the_retry_without_tools(groq, conversation_id):
    groq.enqueue(
        Reply.error(400, code="tool_use_failed"), Reply.text("alpha beta gamma delta epsilon", delay=0.3)
    )
    run_id = queue_message(conversation_id)
    redis = redis_client()  # the app's client, for a thread outside the app context
    claim_and_cancel_after_first_request = threading.Thread(
        target=lambda: (groq.wait_for_requests(1, timeout=10), redis.set(cancel_key(run_id), "1"))
    )
    claim_and_cancel_after_first_request.start()
    execute_run(run_id)
    claim_and_cancel_after_first_request.join(10)
    run = stored_run(run_id)
    assert run.status == "cancelled"
    assert events(conversation_id, run_id)[-1][2]["status"] == "cancelled"
    streamed = streamed_text(events(conversation_id, run_id))
    assert 0 < len(streamed.split()) < 5  # the retry streamed, then stopped at the cancel
    assert [r.content for r in replies(conversation_id)] == [streamed]


def test_cancel_flag_set_before_the_stream(groq, conversation_id):
    groq.default = Reply.text("first second third fourth")
    run_id = queue_message(conversation_id)
    redis_client().set(cancel_key(run_id), "1")
    execute_run(run_id)

    run = stored_run(run_id)
    assert run.status == "cancelled" and run.finished_at is not None
    assert replies(conversation_id) == []  # stopped before the model was asked: nothing to keep
    assert groq.requests == []
    end = events(conversation_id, run_id)[-1][2]
    assert end["status"] == "cancelled" and end["full_text"] == ""
    assert time_saved(conversation_id) == 0
    assert not runs.cancel_requested(run_id)


def test_cancel_during_the_stream_keeps_what_was_streamed(app, groq, conversation_id):
    groq.default = Reply.tokens(200, delay=0.01)
    run_id = queue_message(conversation_id)
    key = stream_key(conversation_id)

    redis = redis_client()  # the app's client, for a thread outside the app context

    def cancel_after_some_text():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and redis.xlen(key) < 6:
            time.sleep(0.005)
        with app.app_context():
            runs.request_cancel(conversation_id, run_id)
            db.session.remove()

    canceller = threading.Thread(target=cancel_after_some_text)
    canceller.start()
    execute_run(run_id)
    canceller.join(10)

    run = stored_run(run_id)
    assert run.status == "cancelled"
    evs = events(conversation_id, run_id)
    text = streamed_text(evs)
    assert 0 < len(text.split()) < 200
    assert [r.content for r in replies(conversation_id)] == [text]
    assert evs[-1][2]["full_text"] == text and evs[-1][2]["status"] == "cancelled"


def _workspace_handoff_mode(workspace_id, mode: str) -> None:
    db.session.get(Workspace, workspace_id).handoff_mode = mode
    db.session.commit()


def test_request_human_records_the_handoff_and_tells_the_visitor(groq, conversation_id):
    groq.enqueue(
        Reply.tool_call("request_human", {"reason": "Wants a refund"}, id="call_h"),
        Reply.text("Someone from the studio will join you here."),
    )
    run_id = queue_message(conversation_id, "I want to talk to a person about a refund")
    execute_run(run_id)

    evs = events(conversation_id)
    assert names(evs) == [
        "message_start",
        "tool_call",
        "tool_result",
        "handoff",
        *["delta"] * 8,
        "message_end",
    ]
    assert evs[3][2] == {"status": "requested", "reason": "Wants a refund"}
    conversation = db.session.get(Conversation, conversation_id)
    assert conversation.handoff_requested_at is not None
    assert conversation.handoff_reason == "Wants a refund"
    assert conversation.agent_mode == "auto"  # `notify`: the agent keeps answering
    assert stored_run(run_id).status == "completed"
    [reply] = replies(conversation_id)
    assert reply.content == "Someone from the studio will join you here."
    assert reply.meta["tool_calls"] == ["request_human"]


def test_a_second_request_keeps_the_first_ones_time_and_reason(groq, conversation_id):
    groq.default = Reply.tool_calls([("request_human", {"reason": "first"})], text="")
    groq.when("", Reply.text("OK."), stage="tool")
    first = queue_message(conversation_id, "a person please")
    execute_run(first)
    asked_at = db.session.get(Conversation, conversation_id).handoff_requested_at
    db.session.close()
    groq.default = Reply.tool_calls([("request_human", {"reason": "second"})], text="")
    second = queue_message(conversation_id, "still waiting")
    execute_run(second)
    conversation = db.session.get(Conversation, conversation_id)
    assert conversation.handoff_requested_at == asked_at
    assert conversation.handoff_reason == "first"
    handoffs = [data for _, name, data in events(conversation_id) if name == "handoff"]
    assert [h["reason"] for h in handoffs] == ["first", "second"]  # the visitor hears each one


def test_request_human_in_pause_mode_pauses_the_conversation_and_cancels_later_runs(
    groq, conversation_id, workspace_id
):
    _workspace_handoff_mode(workspace_id, "pause")
    groq.enqueue(
        Reply.tool_call("request_human", {"reason": "Complaint"}), Reply.text("A person will answer.")
    )
    run_id = queue_message(conversation_id, "I have a complaint")
    later = queue_message(conversation_id, "hello?")  # queued behind the asking run
    execute_run(run_id)

    conversation = db.session.get(Conversation, conversation_id)
    assert conversation.agent_mode == "paused"
    assert stored_run(run_id).status == "completed"  # the asking run finishes its reply
    assert stored_run(later).status == "cancelled"
    evs = events(conversation_id)
    mode = [data for _, name, data in evs if name == "agent_mode"]
    assert mode == [{"mode": "paused", "by": "agent"}]
    later_end = [data for _, name, data in evs if name == "message_end" and data["run_id"] == str(later)]
    assert [e["status"] for e in later_end] == ["cancelled"]
    [reply] = replies(conversation_id)
    assert reply.content == "A person will answer."
    assert len(groq.requests) == 2  # the cancelled run never reached the model
