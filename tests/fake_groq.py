"""A scriptable fake of Groq's chat-completions HTTP API (standard library only).

Point the real ``groq`` SDK at it with ``GROQ_BASE_URL=http://127.0.0.1:<port>``
(or ``groq.Groq(base_url=server.base_url)``); the SDK appends the paths below.

Endpoints
---------
``POST /openai/v1/chat/completions``
    Needs ``Authorization: Bearer <anything>``, otherwise 401 with
    ``{"error": {"message": "Invalid API Key", "type": "invalid_request_error",
    "code": "invalid_api_key"}}``. The body must be JSON with ``model`` and a
    non-empty ``messages`` list (else 400). Accepted bodies are recorded.
``GET /openai/v1/models``
    A small ``{"object": "list", "data": [...]}`` (same auth rule).

Wire format (as Groq sends it)
------------------------------
``stream: true`` -> 200, ``Content-Type: text/event-stream``, HTTP/1.1 chunked
transfer encoding, one SSE event per chunk: ``data: <json>\\n\\n``, where each
json is a ``chat.completion.chunk``::

    {"id": "chatcmpl-<uuid>", "object": "chat.completion.chunk", "created": <int>,
     "model": <request model>, "system_fingerprint": "fp_...",
     "choices": [{"index": 0, "delta": {...}, "logprobs": null, "finish_reason": null}],
     "x_groq": {"id": "req_..."}}

1. first chunk: delta ``{"role": "assistant", "content": ""}``
2. one chunk per content piece: delta ``{"content": "..."}``
3. tool calls, all in ONE delta: ``{"tool_calls": [{"index": 0, "id": "call_...",
   "type": "function", "function": {"name": ..., "arguments": "<json string>"}}]}``
4. final chunk: delta ``{}``, ``finish_reason`` "stop" / "tool_calls", and
   ``x_groq`` = ``{"id": ..., "usage": {"queue_time", "prompt_tokens", "prompt_time",
   "completion_tokens", "completion_time", "total_tokens", "total_time"}}``
   (also top-level ``usage`` if the request set ``stream_options.include_usage``)
5. ``data: [DONE]``

Like real Groq, ``x_groq`` is only on the first and the final chunk.
``stream: false`` -> one ``chat.completion`` object with ``choices[0].message``,
``usage`` and ``x_groq``. Errors are always plain JSON with an HTTP status:
``{"error": {"message", "type", "code"?, "failed_generation"?}}``.

Scripting (which reply a request gets)
--------------------------------------
1. rules (``server.when(contains, reply)``), in the order added: the first one
   whose ``contains`` is a substring of the LAST user message wins. ``stage``
   restricts where a rule applies: "user" (default; the request's last message
   has role user), "tool" (last message is a tool result) or "any". So a
   persistent tool-call rule does not loop on the tool follow-up request.
   ``once=True`` rules are removed after their first match.
2. the FIFO queue (``server.enqueue(...)``), one reply per request;
3. ``server.default`` (initially ``Reply.echo()``).

Default echo (deterministic): if the last message has role "tool" the reply is
``"Here is what I found: " + <that tool message content, verbatim>``, otherwise
``"You said: " + <content of the last user message>`` ("" if none). Content
given as a list of parts uses its text parts joined with " ". The text is
streamed as word chunks (``split_words``: each chunk is a word with its leading
whitespace; trailing whitespace is a chunk of its own), e.g. "You said: hi" ->
["You", " said:", " hi"]; joining the chunks gives the text back exactly.

Usage: ``prompt_tokens`` defaults to the number of whitespace-separated words of
all message contents; ``completion_tokens`` to the number of content chunks
(+1 per tool call). Both can be set on the ``Reply``.

Control API (no auth; for a server running in another process)
----------------------------------------------------------------
``POST /_control/enqueue``  body: a reply spec or a list of them
``POST /_control/default``  body: a reply spec
``POST /_control/when``     body: ``{"contains": str, "reply": spec, "once": false,
                            "stage": "user"}``
``POST /_control/reset``    clears requests, queue and rules; restores the default
``GET  /_control/requests`` JSON list of the recorded request bodies

A reply spec is ``{"kind": <factory>, **factory kwargs}`` with kind one of text
(``text``: str or list of chunks), tokens (``n``), echo, tool_call (``name``,
``arguments``), tool_calls (``calls``: [{"name", "arguments", "id"?}]), error
(``status``, ``code``, ``message``, ``failed_generation``, ``retry_after``),
drop_after (``after``, ``text``), stream_error (``after``, ``status``, ...),
stall_after (``after``, ``seconds``: silent with the connection open, then closed).
Every kind takes ``delay``, ``first_delay``, ``prompt_tokens``,
``completion_tokens``, ``finish_reason``, ``headers``. ``Reply.to_dict()`` output
is accepted as well. ``FakeGroqControl(base_url)`` wraps this API in Python.

Timing: headers go out at once; then ``first_delay``, the role chunk and the first
content chunk; then ``delay`` before every later content chunk and before the
final chunk. With ``delay == 0`` events are batched into large socket writes.

Command line: ``python tests/fake_groq.py --port 0 [--tokens 5000] [--delay 0]
[--first-delay 0]`` prints ``PORT <n>`` as its first stdout line and serves until
killed. ``--tokens N`` makes the default reply ``Reply.tokens(N)``:
"tok0", " tok1", ..., " tok<N-1>".
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import http
import json
import re
import signal
import socket
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

CHAT_PATH = "/openai/v1/chat/completions"
MODELS_PATH = "/openai/v1/models"
ECHO_PREFIX = "You said: "
TOOL_PREFIX = "Here is what I found: "
FINGERPRINT = "fp_fakegroq01"
MODELS = [
    ("llama-3.3-70b-versatile", "Meta", 131072),
    ("llama-3.1-8b-instant", "Meta", 131072),
    ("openai/gpt-oss-20b", "OpenAI", 131072),
]
_WORDS = re.compile(r"\s*\S+|\s+")
_BATCH_BYTES = 64 * 1024


def split_words(text: str) -> list[str]:
    """Word chunks whose concatenation is exactly ``text``."""
    return _WORDS.findall(text)


def content_text(content: Any) -> str:
    """Text of a message ``content``: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def last_user_text(messages: Sequence[Mapping]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def echo_text(messages: Sequence[Mapping]) -> str:
    """The deterministic default reply text (see module docstring)."""
    if messages and messages[-1].get("role") == "tool":
        return TOOL_PREFIX + content_text(messages[-1].get("content"))
    return ECHO_PREFIX + last_user_text(messages)


def error_body(
    message: str, error_type: str = "invalid_request_error", code: str | None = None, **extra: Any
) -> dict:
    error = {"message": message, "type": error_type}
    if code is not None:
        error["code"] = code
    error.update(extra)
    return {"error": error}


def _default_error(status: int, code: str | None) -> tuple[str, str]:
    if code == "tool_use_failed":
        return (
            "Failed to call a function. Please adjust your prompt. See 'failed_generation' for more details.",
            "invalid_request_error",
        )
    if status == 401:
        return "Invalid API Key", "invalid_request_error"
    if status == 429:
        return (
            "Rate limit reached for model on tokens per minute (TPM): Limit 6000, "
            "Used 6000, Requested 100. Please try again in 0s.",
            "tokens",
        )
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return phrase, "internal_server_error" if status >= 500 else "invalid_request_error"


@dataclass
class Reply:
    """One scripted response. Build it with the class-method factories."""

    mode: str = "echo"  # echo | text | tool_calls | error | drop | stream_error | stall
    chunks: list[str] = field(default_factory=list)
    calls: list[dict] = field(default_factory=list)  # tool calls: {"name", "arguments", "id"}
    status: int = 200
    error_json: dict | None = None  # the whole error body, for error / stream_error
    after: int = 0  # content chunks sent before drop / stream_error / stall
    stall: float = 0.0  # seconds a stall holds the connection open, silent, before closing it
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    first_delay: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None

    @classmethod
    def echo(cls, **opts: Any) -> Reply:
        return cls(mode="echo", **opts)

    @classmethod
    def text(cls, text: str | Sequence[str], **opts: Any) -> Reply:
        chunks = split_words(text) if isinstance(text, str) else list(text)
        return cls(mode="text", chunks=chunks, **opts)

    @classmethod
    def tokens(cls, n: int, **opts: Any) -> Reply:
        return cls.text([f"tok{i}" if i == 0 else f" tok{i}" for i in range(n)], **opts)

    @classmethod
    def tool_call(cls, name: str, arguments: Any = None, *, id: str | None = None, **opts: Any) -> Reply:
        return cls.tool_calls([{"name": name, "arguments": arguments, "id": id}], **opts)

    @classmethod
    def tool_calls(cls, calls: Sequence[Mapping | Sequence], *, text: str = "", **opts: Any) -> Reply:
        """``calls``: dicts {"name", "arguments", "id"?} or (name, arguments) pairs."""
        normalized = []
        for call in calls:
            call = dict(call) if isinstance(call, Mapping) else {"name": call[0], "arguments": call[1]}
            args = call.get("arguments")
            if not isinstance(args, str):
                args = json.dumps({} if args is None else args)
            normalized.append({"name": call["name"], "arguments": args, "id": call.get("id")})
        return cls(mode="tool_calls", chunks=split_words(text), calls=normalized, **opts)

    @classmethod
    def error(
        cls,
        status: int = 500,
        *,
        code: str | None = None,
        message: str | None = None,
        error_type: str | None = None,
        failed_generation: str | None = None,
        retry_after: str | float | None = None,
        **opts: Any,
    ) -> Reply:
        default_message, default_type = _default_error(status, code)
        if status == 429:
            code = code or "rate_limit_exceeded"
            retry_after = 0 if retry_after is None else retry_after
        extra = {}
        if code == "tool_use_failed" or failed_generation is not None:
            extra["failed_generation"] = failed_generation or "<function=unknown>{}</function>"
        body = error_body(message or default_message, error_type or default_type, code, **extra)
        headers = dict(opts.pop("headers", None) or {})
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        return cls(mode="error", status=status, error_json=body, headers=headers, **opts)

    @classmethod
    def drop_after(cls, after: int, text: str | None = None, **opts: Any) -> Reply:
        """Streams ``after`` content chunks, then closes the socket mid-body."""
        chunks = split_words(text) if text is not None else cls.tokens(after).chunks
        return cls(mode="drop", chunks=chunks, after=after, **opts)

    @classmethod
    def stall_after(cls, after: int, seconds: float = 30.0, **opts: Any) -> Reply:
        """Streams ``after`` content chunks, then sends nothing for ``seconds`` with the
        connection open (a stalled model), then closes the socket mid-body."""
        return cls(mode="stall", chunks=cls.tokens(after).chunks, after=after, stall=seconds, **opts)

    @classmethod
    def stream_error(
        cls, after: int = 0, status: int = 500, text: str | None = None, **error_opts: Any
    ) -> Reply:
        """Streams ``after`` chunks, then an in-stream ``data: {"error": ...}`` event.
        A non-streaming request gets the error as an HTTP ``status`` response."""
        reply = cls.error(status, **error_opts)
        chunks = split_words(text) if text is not None else cls.tokens(after).chunks
        return dataclasses.replace(reply, mode="stream_error", chunks=chunks, after=after)

    @classmethod
    def from_dict(cls, spec: Mapping) -> Reply:
        spec = dict(spec)
        if "mode" in spec:
            return cls(**spec)
        kind = spec.pop("kind", "echo")
        factory = {"drop": "drop_after"}.get(kind, kind)
        if factory not in _FACTORIES:
            raise ValueError(f"unknown reply kind {kind!r}")
        return getattr(cls, factory)(**spec)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def resolve(self, messages: Sequence[Mapping]) -> Reply:
        """Turns an echo reply into the concrete text reply for ``messages``."""
        if self.mode != "echo":
            return self
        return dataclasses.replace(self, mode="text", chunks=split_words(echo_text(messages)))


_FACTORIES = {
    "echo",
    "text",
    "tokens",
    "tool_call",
    "tool_calls",
    "error",
    "drop_after",
    "stream_error",
    "stall_after",
}


@dataclass
class _Rule:
    contains: str
    reply: Reply
    once: bool = False
    stage: str = "user"  # user | tool | any

    def matches(self, user_text: str, last_role: str | None) -> bool:
        if self.stage == "user" and last_role != "user":
            return False
        if self.stage == "tool" and last_role != "tool":
            return False
        return self.contains in user_text


class FakeGroq:
    """The fake server. ``start()`` serves it from a daemon thread."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, default: Reply | None = None, verbose: bool = False
    ) -> None:
        self.host, self._port, self.verbose = host, port, verbose
        self._initial_default = default or Reply.echo()
        self.default = self._initial_default
        self.requests: list[dict] = []
        self._queue: collections.deque[Reply] = collections.deque()
        self._rules: list[_Rule] = []
        self._cond = threading.Condition()
        self._connections: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> FakeGroq:
        self._httpd = _Server((self.host, self._port), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-groq", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._cond:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> FakeGroq:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- scripting ---------------------------------------------------------
    def enqueue(self, *replies: Reply) -> None:
        with self._cond:
            self._queue.extend(replies)

    def when(self, contains: str, reply: Reply, *, once: bool = False, stage: str = "user") -> None:
        if stage not in ("user", "tool", "any"):
            raise ValueError(f"bad stage {stage!r}")
        with self._cond:
            self._rules.append(_Rule(contains, reply, once, stage))

    def reset(self) -> None:
        with self._cond:
            self.requests.clear()
            self._queue.clear()
            self._rules.clear()
            self.default = self._initial_default

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[dict]:
        """Blocks until at least ``n`` requests were recorded; returns a copy of them."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(f"got {len(self.requests)} requests, wanted {n}")
            return list(self.requests)

    def _choose(self, body: dict) -> Reply:
        messages = body["messages"]
        user_text = last_user_text(messages)
        last_role = messages[-1].get("role") if messages else None
        with self._cond:
            self.requests.append(body)
            self._cond.notify_all()
            for rule in self._rules:
                if rule.matches(user_text, last_role):
                    if rule.once:
                        self._rules.remove(rule)
                    return rule.reply.resolve(messages)
            reply = self._queue.popleft() if self._queue else self.default
        return reply.resolve(messages)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._cond:
            (self._connections.add if add else self._connections.discard)(conn)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    fake: FakeGroq


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    prompt_time, completion_time = 0.001, round(completion_tokens / 500, 6)
    return {
        "queue_time": 0.01,
        "prompt_tokens": prompt_tokens,
        "prompt_time": prompt_time,
        "completion_tokens": completion_tokens,
        "completion_time": completion_time,
        "total_tokens": prompt_tokens + completion_tokens,
        "total_time": round(prompt_time + completion_time, 6),
    }


class _Completion:
    """Ids and envelopes shared by all chunks of one response."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4()}"
        self.meta = {"created": int(time.time()), "model": model, "system_fingerprint": FINGERPRINT}
        self.request_id = "req_" + uuid.uuid4().hex[:26]

    def chunk(self, delta: dict, finish_reason: str | None = None, x_groq: dict | None = None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        out = {"id": self.id, "object": "chat.completion.chunk", **self.meta, "choices": [choice]}
        if x_groq is not None:
            out["x_groq"] = {"id": self.request_id, **x_groq}
        return out

    def completion(self, message: dict, finish_reason: str, usage: dict) -> dict:
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        return {
            "id": self.id,
            "object": "chat.completion",
            **self.meta,
            "choices": [choice],
            "usage": usage,
            "x_groq": {"id": self.request_id},
        }


class _ChunkedSSE:
    """Writes SSE events as HTTP chunks; batches them unless ``eager``."""

    def __init__(self, wfile: Any, eager: bool) -> None:
        self.wfile, self.eager, self.buf = wfile, eager, bytearray()

    def event(self, data: dict | str) -> None:
        payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        frame = f"data: {payload}\n\n".encode()
        self.buf += b"%x\r\n%s\r\n" % (len(frame), frame)
        if self.eager or len(self.buf) >= _BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.wfile.write(bytes(self.buf))
            self.buf.clear()

    def close(self) -> None:
        self.buf += b"0\r\n\r\n"
        self.flush()


def _tool_call_deltas(reply: Reply) -> list[dict]:
    return [
        {
            "index": i,
            "id": call["id"] or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call["name"], "arguments": call["arguments"]},
        }
        for i, call in enumerate(reply.calls)
    ]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            super().log_message(format, *args)

    # -- routing -----------------------------------------------------------
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_control/requests":
            with self.server.fake._cond:
                self._json(200, list(self.server.fake.requests))
        elif path == MODELS_PATH:
            if self._authorized():
                self._json(
                    200,
                    {
                        "object": "list",
                        "data": [
                            {
                                "id": name,
                                "object": "model",
                                "created": 1733447754,
                                "owned_by": owner,
                                "active": True,
                                "context_window": ctx,
                                "public_apps": None,
                            }
                            for name, owner, ctx in MODELS
                        ],
                    },
                )
        else:
            self._not_found("GET")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        try:
            body = self._read_json()
        except ValueError as exc:
            return self._json(400, error_body(f"invalid JSON body: {exc}"))
        if path.startswith("/_control/"):
            return self._control(path.removeprefix("/_control/"), body)
        if path != CHAT_PATH:
            return self._not_found("POST")
        if not self._authorized():
            return
        problem = self._validate(body)
        if problem:
            return self._json(400, error_body(problem))
        reply = self.server.fake._choose(body)
        try:
            if body.get("stream"):
                self._stream(reply, body)
            else:
                self._complete(reply, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-response

    # -- helpers -----------------------------------------------------------
    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw.strip() else None

    def _json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self, method: str) -> None:
        self._json(
            404,
            error_body(
                f"Unknown request URL: {method} {self.path}. Please check the URL for typos.",
                code="unknown_url",
            ),
        )

    def _authorized(self) -> bool:
        if re.fullmatch(r"Bearer \S+", self.headers.get("Authorization", "").strip()):
            return True
        self._json(401, error_body("Invalid API Key", code="invalid_api_key"))
        return False

    @staticmethod
    def _validate(body: Any) -> str | None:
        if not isinstance(body, dict):
            return "request body must be a JSON object"
        if not body.get("model"):
            return "'model' : property 'model' is missing"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "'messages' : minimum number of items is 1"
        if not all(isinstance(m, dict) for m in messages):
            return "'messages' : items must be objects"
        return None

    def _abort(self) -> None:
        """Closes the socket without finishing the response."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _control(self, action: str, body: Any) -> None:
        fake = self.server.fake
        try:
            if action == "enqueue":
                fake.enqueue(*(Reply.from_dict(s) for s in (body if isinstance(body, list) else [body])))
            elif action == "default":
                fake.default = Reply.from_dict(body)
            elif action == "when":
                fake.when(
                    body["contains"],
                    Reply.from_dict(body["reply"]),
                    once=bool(body.get("once", False)),
                    stage=body.get("stage", "user"),
                )
            elif action == "reset":
                fake.reset()
            else:
                return self._not_found("POST")
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            return self._json(400, error_body(f"bad control request: {exc!r}"))
        self._json(200, {"ok": True})

    def _usage(self, reply: Reply, body: dict, content_chunks: int) -> dict:
        prompt = reply.prompt_tokens
        if prompt is None:
            prompt = sum(len(content_text(m.get("content")).split()) for m in body["messages"])
        completion = reply.completion_tokens
        if completion is None:
            completion = content_chunks + len(reply.calls)
        return _usage(prompt, completion)

    def _complete(self, reply: Reply, body: dict) -> None:
        if reply.mode in ("error", "stream_error"):
            return self._json(reply.status, reply.error_json, reply.headers)
        pause = reply.first_delay + reply.delay * len(reply.chunks)
        if pause:
            time.sleep(pause)
        if reply.mode in ("drop", "stall"):
            time.sleep(reply.stall)
            return self._abort()
        message: dict[str, Any] = {"role": "assistant"}
        text = "".join(reply.chunks)
        if text or not reply.calls:
            message["content"] = text
        if reply.calls:
            message["tool_calls"] = [
                {k: v for k, v in d.items() if k != "index"} for d in _tool_call_deltas(reply)
            ]
        finish = reply.finish_reason or ("tool_calls" if reply.calls else "stop")
        usage = self._usage(reply, body, len(reply.chunks))
        completion = _Completion(body["model"]).completion(message, finish, usage)
        self._json(200, completion, {"x-request-id": completion["x_groq"]["id"], **reply.headers})

    def _stream(self, reply: Reply, body: dict) -> None:
        if reply.mode == "error":
            return self._json(reply.status, reply.error_json, reply.headers)
        out = _Completion(body["model"])
        self._start_event_stream(out.request_id, reply.headers)
        sse = _ChunkedSSE(self.wfile, eager=reply.delay > 0)
        chunks = reply.chunks
        if reply.mode in ("drop", "stream_error", "stall"):
            chunks = chunks[: reply.after]
        self._send_text_chunks(sse, out, reply, chunks)
        if reply.mode == "stall":
            sse.flush()
            time.sleep(reply.stall)
        if reply.mode in ("drop", "stall"):
            sse.flush()
            return self._abort()
        if reply.mode == "stream_error":
            sse.event(reply.error_json)
            return sse.close()
        self._finish_stream(sse, out, reply, body, len(chunks))

    def _start_event_stream(self, request_id: str, headers: dict) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", request_id)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    @staticmethod
    def _send_text_chunks(sse: _ChunkedSSE, out: _Completion, reply: Reply, chunks: list) -> None:
        if reply.first_delay:
            time.sleep(reply.first_delay)
        sse.event(out.chunk({"role": "assistant", "content": ""}, x_groq={}))
        for i, text in enumerate(chunks):
            if i and reply.delay:
                time.sleep(reply.delay)
            sse.event(out.chunk({"content": text}))

    def _finish_stream(self, sse: _ChunkedSSE, out: _Completion, reply: Reply, body: dict, sent: int) -> None:
        if reply.calls:
            sse.event(out.chunk({"tool_calls": _tool_call_deltas(reply)}))
        if reply.delay:
            time.sleep(reply.delay)
        usage = self._usage(reply, body, sent)
        final = out.chunk(
            {}, reply.finish_reason or ("tool_calls" if reply.calls else "stop"), x_groq={"usage": usage}
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            final["usage"] = usage
        sse.event(final)
        sse.event("[DONE]")
        sse.close()


class FakeGroqControl:
    """Drives a fake running in another process through its control API."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url, self.timeout = base_url.rstrip("/"), timeout

    def _call(self, method: str, action: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.base_url}/_control/{action}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def enqueue(self, *replies: Reply) -> None:
        self._call("POST", "enqueue", [r.to_dict() for r in replies])

    def set_default(self, reply: Reply) -> None:
        self._call("POST", "default", reply.to_dict())

    def when(self, contains: str, reply: Reply, *, once: bool = False, stage: str = "user") -> None:
        self._call(
            "POST", "when", {"contains": contains, "reply": reply.to_dict(), "once": once, "stage": stage}
        )

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def requests(self) -> list[dict]:
        return self._call("GET", "requests")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Groq chat-completions server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--tokens", type=int, default=None, help="default reply: N word tokens instead of the echo"
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--first-delay", type=float, default=0.0, help="seconds before the first chunk")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    timing = {"delay": args.delay, "first_delay": args.first_delay}
    default = Reply.tokens(args.tokens, **timing) if args.tokens is not None else Reply.echo(**timing)
    server = FakeGroq(args.host, args.port, default=default, verbose=args.verbose).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"PORT {server.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
