"""The event bus: one Redis Stream per conversation.

Entries carry two fields: `e`, the event name, and `d`, its data already
serialised as one line of JSON, so the SSE tail writes it out untouched.
Streams are capped (approximate MAXLEN) and expire STREAM_TTL_SECONDS after
their last run event, which keeps a finished run resumable for at least an hour.
"""

import json
import re
import uuid

from flask import current_app

from backend.extensions import redis_client

ZERO_ID = "0-0"
_ID_RE = re.compile(r"[0-9]{1,20}(?:-[0-9]{1,20})?")
MAX_ID_PART = 2**64 - 1  # both halves of a stream id are unsigned 64-bit


def stream_key(conversation_id: uuid.UUID | str) -> str:
    return f"conv:{conversation_id}:events"


def cancel_key(run_id: uuid.UUID | str) -> str:
    return f"run:{run_id}:cancel"


def parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def is_valid_id(entry_id: str) -> bool:
    """An id Redis accepts. The hub reads every watched stream in ONE XREAD, so a
    cursor Redis rejects (out of range, trailing newline) would stall every stream."""
    if not entry_id or not _ID_RE.fullmatch(entry_id):
        return False
    return max(parse_id(entry_id)) <= MAX_ID_PART


def id_before(entry_id: str) -> str:
    """The largest stream id smaller than entry_id: an exclusive cursor that still yields it."""
    ms, seq = parse_id(entry_id)
    if seq > 0:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-18446744073709551615" if ms > 0 else ZERO_ID


def encode(data: dict) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def last_entry_id(conversation_id) -> str:
    """The id of the newest entry: a cursor that means "from now on"."""
    entries = redis_client().xrevrange(stream_key(conversation_id), count=1)
    return entries[0][0] if entries else ZERO_ID


def cursor_is_lost(conversation_id, cursor: str) -> bool:
    """True when entries after `cursor` may have been trimmed or expired away."""
    if parse_id(cursor) == (0, 0):
        return False
    key = stream_key(conversation_id)
    try:
        info = redis_client().xinfo_stream(key)
    except Exception as exc:  # the stream expired (or never existed)
        if "no such key" in str(exc).lower():
            return True
        raise
    first = info.get("first-entry")
    trimmed = int(info.get("entries-added", 0)) > int(info.get("length", 0))
    return bool(first) and trimmed and parse_id(cursor) < parse_id(first[0])


class RunPublisher:
    """Publishes one run's events; the caller holds the run (one publisher per run)."""

    def __init__(self, conversation_id, run_id, message_id):
        self.key = stream_key(conversation_id)
        self.run_id = str(run_id)
        self.message_id = str(message_id)
        self.count = 0
        config = current_app.config
        self._maxlen = config["STREAM_MAXLEN"]
        self._ttl = config["STREAM_TTL_SECONDS"]
        self._redis = redis_client()

    def _xadd(self, event: str, data: dict, refresh_ttl: bool = False) -> str:
        self.count += 1
        fields = {"e": event, "d": encode(data)}
        if not refresh_ttl:
            return self._redis.xadd(self.key, fields, maxlen=self._maxlen, approximate=True)
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(self.key, fields, maxlen=self._maxlen, approximate=True)
        pipe.expire(self.key, self._ttl)
        return pipe.execute()[0]

    def message_start(self) -> str:
        return self._xadd(
            "message_start", {"run_id": self.run_id, "message_id": self.message_id}, refresh_ttl=True
        )

    def delta(self, text_chunk: str) -> str:
        data = {"run_id": self.run_id, "message_id": self.message_id, "text_chunk": text_chunk}
        return self._xadd("delta", data)

    def delta_and_check(self, text_chunk: str, flag_key: str) -> bool:
        """Publishes a delta and, in the same round trip, tells whether `flag_key` is set
        (a cancel request): checking every chunk costs no extra latency."""
        self.count += 1
        data = {"run_id": self.run_id, "message_id": self.message_id, "text_chunk": text_chunk}
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(self.key, {"e": "delta", "d": encode(data)}, maxlen=self._maxlen, approximate=True)
        pipe.exists(flag_key)
        return bool(pipe.execute()[1])

    def tool_call(self, call_id: str, tool: str, args) -> str:
        return self._xadd("tool_call", {"run_id": self.run_id, "id": call_id, "tool": tool, "args": args})

    def tool_result(self, call_id: str, tool: str, status: str, data, error) -> str:
        payload = {"run_id": self.run_id, "id": call_id, "tool": tool, "status": status, "data": data}
        payload["error"] = error
        return self._xadd("tool_result", payload)

    def error(self, code: str, message: str) -> str:
        return self._xadd("error", {"run_id": self.run_id, "code": code, "message": message})

    def message_end(self, full_text: str, status: str, degraded: bool, usage: dict | None) -> str:
        data = {
            "run_id": self.run_id,
            "message_id": self.message_id,
            "full_text": full_text,
            "status": status,
            "degraded": degraded,
            "usage": usage,
        }
        return self._xadd("message_end", data, refresh_ttl=True)


def run_text_so_far(conversation_id, run_id, first_event_id: str | None) -> str:
    """Concatenates the deltas a run already published (used when a lost run is failed)."""
    start = first_event_id or "-"
    run = str(run_id)
    parts = []
    for _entry_id, fields in redis_client().xrange(stream_key(conversation_id), min=start):
        if fields.get("e") == "delta":
            data = json.loads(fields["d"])
            if data.get("run_id") == run:
                parts.append(data["text_chunk"])
    return "".join(parts)
