"""The fake Groq server, exercised through the real groq SDK (no database needed)."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import groq
import httpx
import pytest

from tests.fake_groq import FakeGroq, FakeGroqControl, Reply, split_words

MODEL = "llama-3.3-70b-versatile"
USER = [{"role": "user", "content": "hello"}]


@pytest.fixture(autouse=True)
def _app_context():
    """Overrides the conftest's database fixture: these tests need no app."""
    yield


@pytest.fixture(scope="module")
def server():
    with FakeGroq() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _clean(server):
    server.reset()
    yield


@pytest.fixture
def client(server):
    with groq.Groq(api_key="test", base_url=server.base_url, max_retries=0) as c:
        yield c


def stream(client, messages=USER, **kwargs):
    return list(client.chat.completions.create(model=MODEL, messages=messages, stream=True, **kwargs))


def text_of(chunks):
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_split_words_is_exact():
    assert split_words("You said: hi") == ["You", " said:", " hi"]
    for text in ["", " a", "a  b ", "line\nbreak\n\n", "https://x.test/b?a=1 ok"]:
        assert "".join(split_words(text)) == text


def test_streaming_text_chunks_and_usage(server, client):
    server.enqueue(Reply.text("Hello there,  how are you? ", prompt_tokens=42))
    chunks = stream(client)
    assert text_of(chunks) == "Hello there,  how are you? "
    first, last = chunks[0], chunks[-1]
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert first.x_groq.id.startswith("req_")
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == split_words("Hello there,  how are you? ")
    assert all(c.object == "chat.completion.chunk" and c.model == MODEL for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert last.choices[0].finish_reason == "stop" and last.choices[0].delta.content is None
    usage = last.x_groq.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (42, 6, 48)
    assert usage.queue_time is not None and usage.total_time is not None
    assert last.x_groq.id == first.x_groq.id


def test_explicit_chunks_and_include_usage(server, client):
    server.enqueue(Reply.text(["Hel", "lo", "!"], completion_tokens=7))
    chunks = stream(client, extra_body={"stream_options": {"include_usage": True}})
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["Hel", "lo", "!"]
    assert chunks[-1].usage.completion_tokens == 7


def test_default_echo_is_deterministic(client):
    messages = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "What is  the price?"}]
    chunks = stream(client, messages)
    assert text_of(chunks) == "You said: What is  the price?"
    assert len(chunks) == 2 + len(split_words("You said: What is  the price?"))
    reply = client.chat.completions.create(model=MODEL, messages=messages)
    assert reply.choices[0].message.content == "You said: What is  the price?"


def test_echo_after_tool_result_contains_tool_content(client):
    tool_content = json.dumps({"url": "https://book.test/s/abc?x=1"})
    messages = [
        {"role": "user", "content": "book me"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_booking_link", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": tool_content},
    ]
    assert text_of(stream(client, messages)) == "Here is what I found: " + tool_content


def test_non_streaming(server, client):
    server.enqueue(Reply.text("Plain answer.", prompt_tokens=3))
    reply = client.chat.completions.create(model=MODEL, messages=USER, temperature=0.2)
    assert reply.object == "chat.completion" and reply.model == MODEL
    assert reply.choices[0].message.content == "Plain answer."
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 2)
    assert reply.x_groq.id.startswith("req_")


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_booking_link",
            "description": "Booking link",
            "parameters": {"type": "object", "properties": {"service_name": {"type": "string"}}},
        },
    }
]


def test_streaming_tool_call(server, client):
    server.enqueue(Reply.tool_call("get_booking_link", {"service_name": None}))
    chunks = stream(client, tools=TOOLS, tool_choice="auto")
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    assert len(calls) == 1
    call = calls[0][0]
    assert call.index == 0 and call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_booking_link"
    assert json.loads(call.function.arguments) == {"service_name": None}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].x_groq.usage.completion_tokens == 1
    body = server.requests[-1]
    assert body["tools"] == TOOLS and body["tool_choice"] == "auto" and body["stream"] is True


def test_multiple_tool_calls_non_streaming(server, client):
    server.enqueue(Reply.tool_calls([("a", {"x": 1}), {"name": "b", "arguments": "{}", "id": "call_fixed"}]))
    message = client.chat.completions.create(model=MODEL, messages=USER, tools=TOOLS).choices[0]
    assert message.finish_reason == "tool_calls"
    calls = message.message.tool_calls
    assert [c.function.name for c in calls] == ["a", "b"]
    assert calls[0].function.arguments == '{"x": 1}' and calls[1].id == "call_fixed"


@pytest.mark.parametrize("streaming", [False, True])
def test_500_is_internal_server_error(server, client, streaming):
    server.enqueue(Reply.error(500))
    with pytest.raises(groq.InternalServerError) as info:
        client.chat.completions.create(model=MODEL, messages=USER, stream=streaming)
    assert info.value.status_code == 500
    assert info.value.body["error"]["type"] == "internal_server_error"


def test_429_is_rate_limit_error_with_retry_after(server, client):
    server.enqueue(Reply.error(429))
    with pytest.raises(groq.RateLimitError) as info:
        client.chat.completions.create(model=MODEL, messages=USER)
    assert info.value.response.headers["retry-after"] == "0"
    assert info.value.body["error"]["code"] == "rate_limit_exceeded"


def test_429_is_retried_by_the_sdk(server):
    server.enqueue(Reply.error(429), Reply.text("after retry"))
    with groq.Groq(api_key="test", base_url=server.base_url, max_retries=1) as retrying:
        reply = retrying.chat.completions.create(model=MODEL, messages=USER)
    assert reply.choices[0].message.content == "after retry"
    assert len(server.requests) == 2


def test_400_tool_use_failed(server, client):
    server.enqueue(Reply.error(400, code="tool_use_failed", failed_generation="<function=x>"))
    with pytest.raises(groq.BadRequestError) as info:
        stream(client, tools=TOOLS)
    error = info.value.body["error"]
    assert error["code"] == "tool_use_failed" and error["type"] == "invalid_request_error"
    assert error["failed_generation"] == "<function=x>" and error["message"]


def test_drop_after_raises_after_partial_chunks(server, client):
    server.enqueue(Reply.drop_after(3))
    received = []
    with pytest.raises((httpx.TransportError, groq.APIConnectionError)):
        for chunk in client.chat.completions.create(model=MODEL, messages=USER, stream=True):
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "tok0", " tok1", " tok2"]
    # the next request on the same client works again
    assert text_of(stream(client)) == "You said: hello"


def test_drop_non_streaming_is_connection_error(server, client):
    server.enqueue(Reply.drop_after(0))
    with pytest.raises(groq.APIConnectionError):
        client.chat.completions.create(model=MODEL, messages=USER)


def test_stream_error_event(server, client):
    server.enqueue(Reply.stream_error(2, message="boom"))
    received = []
    with pytest.raises(groq.APIError, match="boom"):
        for chunk in client.chat.completions.create(model=MODEL, messages=USER, stream=True):
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "tok0", " tok1"]


@pytest.mark.parametrize("authorization", [groq.Omit(), "Basic abc", "Bearer"])
def test_missing_or_bad_api_key_is_401(server, client, authorization):
    with pytest.raises(groq.AuthenticationError) as info:
        client.chat.completions.create(
            model=MODEL, messages=USER, extra_headers={"Authorization": authorization}
        )
    assert info.value.body == {
        "error": {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}
    }
    request = urllib.request.Request(
        server.base_url + "/openai/v1/chat/completions", data=b'{"model": "m", "messages": []}', method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(request, timeout=5)
    assert raw.value.code == 401
    assert server.requests == []


def test_invalid_body_is_400(client):
    with pytest.raises(groq.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])


def test_models_list(client):
    ids = [m.id for m in client.models.list().data]
    assert MODEL in ids


def test_rules_queue_and_default_order(server, client):
    server.default = Reply.text("default")
    server.enqueue(Reply.text("queued 1"), Reply.text("queued 2"))
    server.when("MAGIC", Reply.text("magic once"), once=True)
    server.when("MAGIC", Reply.text("magic always"))

    def ask(content):
        return text_of(stream(client, [{"role": "user", "content": content}]))

    assert ask("say MAGIC now") == "magic once"
    assert ask("plain") == "queued 1"
    assert ask("MAGIC again") == "magic always"
    assert ask("plain") == "queued 2"
    assert ask("plain") == "default"
    assert [r["messages"][-1]["content"] for r in server.requests][:2] == ["say MAGIC now", "plain"]
    server.reset()
    assert server.requests == [] and ask("x") == "You said: x"


def test_rule_stage_skips_tool_follow_up(server, client):
    server.when("book", Reply.tool_call("get_booking_link", {}))
    server.when("book", Reply.text("follow-up scripted"), stage="tool", once=True)
    first = stream(client, [{"role": "user", "content": "book please"}])
    assert first[-1].choices[0].finish_reason == "tool_calls"
    follow_up = [
        {"role": "user", "content": "book please"},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "x", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "LINK"},
    ]
    assert text_of(stream(client, follow_up)) == "follow-up scripted"
    assert text_of(stream(client, follow_up)) == "Here is what I found: LINK"


def test_rule_with_list_content(server, client):
    server.when("DROP-ME", Reply.drop_after(1))
    messages = [{"role": "user", "content": [{"type": "text", "text": "please DROP-ME"}]}]
    with pytest.raises((httpx.TransportError, groq.APIConnectionError)):
        stream(client, messages)


def test_delays_stream_incrementally(server, client):
    server.enqueue(Reply.text("a b c d", first_delay=0.2, delay=0.1))
    start = time.perf_counter()
    arrivals = []
    for chunk in client.chat.completions.create(model=MODEL, messages=USER, stream=True):
        if chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter() - start)
    assert arrivals[0] >= 0.18
    assert arrivals[-1] - arrivals[0] >= 0.25  # three gaps of 0.1 s
    assert arrivals[0] < arrivals[-1] - 0.2  # the first token did not wait for the rest


def test_control_api_over_http(server, client):
    control = FakeGroqControl(server.base_url)
    control.enqueue(Reply.text("from control"))
    control.when("ERR", Reply.error(500), once=True)
    assert text_of(stream(client)) == "from control"
    with pytest.raises(groq.InternalServerError):
        stream(client, [{"role": "user", "content": "ERR"}])

    def post(action, payload):
        request = urllib.request.Request(
            f"{server.base_url}/_control/{action}", data=json.dumps(payload).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    assert post(
        "enqueue",
        [
            {"kind": "text", "text": "one two", "delay": 0.001},
            {"kind": "tool_call", "name": "f", "arguments": {"a": 1}},
        ],
    ) == {"ok": True}
    post("when", {"contains": "CUT", "reply": {"kind": "drop_after", "after": 2}})
    post("default", {"kind": "tokens", "n": 3})
    assert text_of(stream(client)) == "one two"
    assert stream(client)[-2].choices[0].delta.tool_calls[0].function.arguments == '{"a": 1}'
    assert text_of(stream(client)) == "tok0 tok1 tok2"
    with pytest.raises((httpx.TransportError, groq.APIConnectionError)):
        stream(client, [{"role": "user", "content": "CUT here"}])

    recorded = control.requests()
    assert len(recorded) == 6 and recorded[0]["messages"] == USER
    with pytest.raises(urllib.error.HTTPError) as bad:
        post("enqueue", {"kind": "nope"})
    assert bad.value.code == 400
    control.reset()
    assert control.requests() == [] and text_of(stream(client)) == "You said: hello"


def test_wait_for_requests(server, client):
    stream(client)
    assert len(server.wait_for_requests(1, timeout=1)) == 1
    with pytest.raises(TimeoutError):
        server.wait_for_requests(2, timeout=0.05)


def test_cli_subprocess_serves_many_tokens_fast():
    script = Path(__file__).with_name("fake_groq.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--tokens", "5000", "--delay", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("PORT ")
        base_url = f"http://127.0.0.1:{int(line.split()[1])}"
        with groq.Groq(api_key="test", base_url=base_url, max_retries=0) as cli_client:
            start = time.perf_counter()
            chunks = stream(cli_client)
            elapsed = time.perf_counter() - start
        assert len(chunks) == 5002
        assert text_of(chunks) == " ".join(f"tok{i}" for i in range(5000))
        assert chunks[-1].x_groq.usage.completion_tokens == 5000
        assert elapsed < 10
        assert len(FakeGroqControl(base_url).requests()) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
