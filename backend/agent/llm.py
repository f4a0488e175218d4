"""The Groq client: one per app (kept in app.extensions), streaming chat completions with tools.

The SDK's own retries are off: the run loop retries only before the first token
(after that a retry would repeat text the visitor already saw). Its HTTP pool is
sized for a gevent worker running many runs at once, with few keep-alive
connections, since the pool's bookkeeping grows with their number.
"""

import threading
from dataclasses import dataclass, field

import groq
import httpx
from flask import current_app

_lock = threading.Lock()


class LLMUnavailable(Exception):
    """The model could not be reached; `code` says why (no_api_key, rate_limited, ...)."""

    def __init__(self, code: str, message: str, retryable: bool = True):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


def get_client() -> groq.Groq:
    """The current app's client, built on first use and again when its settings change."""
    config = current_app.config
    api_key = config.get("GROQ_API_KEY")
    if not api_key:
        raise LLMUnavailable(
            "no_api_key", "GROQ_API_KEY is not set: the assistant cannot reach the model", retryable=False
        )
    key = (api_key, config.get("GROQ_BASE_URL"), config["GROQ_TIMEOUT_SECONDS"])
    with _lock:
        held = current_app.extensions.get("groq")
        if held is None or held[0] != key:
            held = (key, _new_client(config, api_key))
            current_app.extensions["groq"] = held
        return held[1]


def _new_client(config, api_key: str) -> groq.Groq:
    return groq.Groq(
        api_key=api_key,
        base_url=config.get("GROQ_BASE_URL") or None,
        max_retries=0,
        timeout=httpx.Timeout(config["GROQ_TIMEOUT_SECONDS"], connect=10.0),
        http_client=httpx.Client(
            limits=httpx.Limits(
                max_connections=config["GROQ_HTTP_MAX_CONNECTIONS"],
                max_keepalive_connections=config["GROQ_HTTP_KEEPALIVE_CONNECTIONS"],
            ),
            timeout=httpx.Timeout(config["GROQ_TIMEOUT_SECONDS"], connect=10.0),
        ),
    )


CHAT_COMPLETIONS_PATH = "/openai/v1/chat/completions"


def stream_chat(client: groq.Groq, **params) -> groq.Stream:
    """A streaming chat completion whose chunks are plain dicts.

    The request, its errors and the SSE decoding are the SDK's own (its Stream
    raises the same exceptions as `chat.completions.create`), but chunks skip the
    SDK's pydantic model construction, which costs ~0.2 ms a chunk and would cap
    one worker at a few thousand tokens per second.
    """
    return client.post(
        CHAT_COMPLETIONS_PATH,
        cast_to=object,
        body={**params, "stream": True},
        stream=True,
        stream_cls=groq.Stream[object],
    )


@dataclass
class ToolCallAccumulator:
    """Collects tool-call deltas by index (Groq sends each whole, but may not always)."""

    calls: dict[int, dict] = field(default_factory=dict)

    def add(self, tool_call_deltas: list[dict]) -> None:
        for position, delta in enumerate(tool_call_deltas):
            index = delta.get("index", position)
            call = self.calls.setdefault(index, {"id": None, "name": "", "arguments": ""})
            if delta.get("id"):
                call["id"] = delta["id"]
            function = delta.get("function") or {}
            if function.get("name"):
                call["name"] += function["name"]
            if function.get("arguments"):
                call["arguments"] += function["arguments"]

    def ordered(self) -> list[dict]:
        return [self.calls[i] for i in sorted(self.calls)]


def classify_error(exc: Exception) -> LLMUnavailable:
    """Maps SDK and transport errors to a stable code for the run's `error`."""
    if isinstance(exc, LLMUnavailable):
        return exc
    if isinstance(exc, groq.RateLimitError):
        return LLMUnavailable("rate_limited", "The model provider is rate limiting requests")
    if isinstance(exc, groq.AuthenticationError):
        return LLMUnavailable("auth_failed", "The model provider rejected the API key", retryable=False)
    if isinstance(exc, groq.APIStatusError):
        retryable = exc.status_code >= 500 or exc.status_code in (408, 409)
        return LLMUnavailable(
            f"llm_http_{exc.status_code}",
            f"The model provider answered {exc.status_code}",
            retryable=retryable,
        )
    if isinstance(exc, groq.APITimeoutError | httpx.TimeoutException):
        return LLMUnavailable("llm_timeout", "The model provider timed out")
    if isinstance(exc, groq.APIConnectionError | httpx.TransportError):
        return LLMUnavailable("llm_connection", "The connection to the model provider failed")
    if isinstance(exc, groq.APIError):  # an error event inside the stream
        return LLMUnavailable("llm_stream_error", f"The model provider reported an error: {exc.message}")
    return LLMUnavailable("llm_error", f"The model call failed ({type(exc).__name__})")


def is_tool_use_failed(exc: BaseException | None) -> bool:
    if not isinstance(exc, groq.BadRequestError):
        return False
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    return isinstance(error, dict) and error.get("code") == "tool_use_failed"
