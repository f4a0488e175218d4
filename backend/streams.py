"""The event bus: one Redis Stream per conversation.

Entries carry two fields: `e`, the event name, and `d`, its data already
serialised as one line of JSON, so the SSE tail writes it out untouched.
Streams are capped (approximate MAXLEN) and expire STREAM_TTL_SECONDS after
their last run event, which keeps a finished run resumable for at least an hour.
"""

import json
import re
import threading
import time
import uuid
from typing import cast

import redis
from flask import current_app

from backend.extensions import redis_client
from backend.outages import retry_during_outage

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


# A stream entry as the app's clients return it (they decode replies): its id and its fields.
StreamEntry = tuple[str, dict[str, str]]


def stream_entries(reply: object) -> list[StreamEntry]:
    """The entries of an XRANGE/XREVRANGE reply. redis-py types it for both settings of
    decode_responses (bytes or str) and as optional; the app's clients decode, and Redis
    answers a range with a list, empty when nothing matches."""
    return cast(list[StreamEntry], reply)


def encode(data: dict) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def last_entry_id(conversation_id) -> str:
    """The id of the newest entry: a cursor that means "from now on"."""
    entries = stream_entries(redis_client().xrevrange(stream_key(conversation_id), count=1))
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
    if not first or not trimmed:
        return False
    return parse_id(cursor) < parse_id(first[0])


def append_entries(
    client, key: str, entries: list[dict], maxlen: int, ttl: int | None = None, flag_key: str | None = None
) -> tuple[list[str], bool]:
    """XADDs `entries` in one round trip, refreshing the key's TTL when `ttl` is given and
    reading `flag_key` (a run's cancel flag) in the same trip. Returns (ids, flag is set)."""
    pipe = client.pipeline(transaction=False)
    for fields in entries:
        pipe.xadd(key, fields, maxlen=maxlen, approximate=True)
    if ttl is not None:
        pipe.expire(key, ttl)
    if flag_key:
        pipe.exists(flag_key)
    results = pipe.execute()
    return results[: len(entries)], bool(flag_key and results[-1])


class RunPublisher:
    """Publishes one run's events, in order, to the conversation's stream.

    By default every event is written at once and its entry id returned. With
    `batched=True` (the run loop), deltas are handed to a writer thread (a greenlet under gevent) that sends
    whatever has accumulated in one pipelined round trip: one chunk at a time
    while the model is slower than Redis, many at once when it is faster, so
    the token loop never waits on Redis. Each batch also reads the run's cancel
    flag, so checking for a cancel costs nothing extra. Events whose id the
    caller needs (message_start, message_end) are written synchronously, after
    everything queued before them.
    """

    YIELD_EVERY = 64  # let the writer run even when chunks arrive faster than it sends

    def __init__(
        self, conversation_id, run_id, message_id, cancel_flag_key: str | None = None, batched: bool = False
    ):
        self.key = stream_key(conversation_id)
        self.run_id = str(run_id)
        self.message_id = str(message_id)
        self.count = 0
        self.cancel_requested = False
        config = current_app.config
        self._maxlen = config["STREAM_MAXLEN"]
        self._ttl = config["STREAM_TTL_SECONDS"]
        self._redis = redis_client()
        self._cancel_key = cancel_flag_key
        self._pending: list[dict] = []
        self._busy = False
        self._failure: Exception | None = None
        self._cond = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closed = False
        self._batched = batched
        self._gap = False  # deltas were lost while Redis was unreachable
        self._write_retry_seconds = config["STREAM_WRITE_RETRY_SECONDS"]

    # -- queueing -----------------------------------------------------------------
    def _enqueue(self, event: str, data: dict) -> str | None:
        if not self._batched:
            return self._write_now(event, data, refresh_ttl=False)
        self.count += 1
        with self._cond:
            if self._failure is not None:
                raise self._failure
            self._pending.append({"e": event, "d": encode(data)})
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, daemon=True, name="run-publisher")
                self._writer.start()
            self._cond.notify_all()
            backlog = len(self._pending)
        if backlog % self.YIELD_EVERY == 0:
            time.sleep(0)
        return None  # batched: the entry's id is known once the writer has written it

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending and self._closed:
                    return
                batch, self._pending = self._pending, []
                self._busy = True
            try:
                self._send(batch)
            except redis.RedisError:  # Redis is away: these deltas are lost, the next write says so
                self._gap = True
            except Exception as exc:  # surfaced to the run loop at its next publish
                with self._cond:
                    self._failure = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _send(self, batch: list[dict], refresh_ttl: bool = False) -> list[str]:
        gap = self._gap
        if gap:
            batch = [gap_entry(self.run_id), *batch]
        ids, flag_set = append_entries(
            self._redis, self.key, batch, self._maxlen, self._ttl if refresh_ttl else None, self._cancel_key
        )
        if gap:
            self._gap = False
            ids = ids[1:]
        if flag_set:
            self.cancel_requested = True
        return ids

    def _drain(self) -> None:
        with self._cond:
            while self._pending or self._busy:
                self._cond.wait()
            if self._failure is not None:
                raise self._failure

    def _write_now(self, event: str, data: dict, refresh_ttl: bool = True) -> str:
        """Writes after everything queued so far and returns the entry id."""
        self._drain()
        self.count += 1
        entry = {"e": event, "d": encode(data)}
        return retry_during_outage(
            lambda: self._send([entry], refresh_ttl=refresh_ttl)[0],
            redis.RedisError,
            self._write_retry_seconds,
            f"writing {event} of run {self.run_id}",
            is_outage=lambda error: isinstance(error, redis.ConnectionError | redis.TimeoutError),
        )

    def close(self) -> None:
        """Sends what is still queued and stops the writer."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._drain()

    # -- the events of API.md -----------------------------------------------------------
    def message_start(self) -> str:
        return self._write_now("message_start", {"run_id": self.run_id, "message_id": self.message_id})

    def delta(self, text_chunk: str) -> str | None:
        return self._enqueue(
            "delta", {"run_id": self.run_id, "message_id": self.message_id, "text_chunk": text_chunk}
        )

    def tool_call(self, call_id: str, tool: str, args) -> str | None:
        return self._enqueue("tool_call", {"run_id": self.run_id, "id": call_id, "tool": tool, "args": args})

    def tool_result(self, call_id: str, tool: str, status: str, data, error) -> str | None:
        payload = {"run_id": self.run_id, "id": call_id, "tool": tool, "status": status, "data": data}
        return self._enqueue("tool_result", {**payload, "error": error})

    def error(self, code: str, message: str) -> str | None:
        return self._enqueue("error", {"run_id": self.run_id, "code": code, "message": message})

    def message_end(self, full_text: str, status: str, degraded: bool, usage: dict | None) -> str:
        data = {
            "run_id": self.run_id,
            "message_id": self.message_id,
            "full_text": full_text,
            "status": status,
            "degraded": degraded,
            "usage": usage,
        }
        entry_id = self._write_now("message_end", data)
        self.close()
        return entry_id


def gap_entry(run_id: str) -> dict:
    """A `resync` written before the first event after some were lost (Redis was unreachable):
    a visitor reloads the messages over REST, the run's `message_end` still follows."""
    return {"e": "resync", "d": encode({"reason": "events_lost", "run_id": run_id})}


def publish_message(conversation_id, message) -> str:
    """A whole message that is not a run's reply (an owner writing to the visitor):
    event `message` with {message_id, role, content, timestamp}."""
    data = {
        "message_id": str(message.id),
        "role": message.role,
        "content": message.content,
        "timestamp": message.timestamp.isoformat(),
    }
    config = current_app.config
    ids, _ = append_entries(
        redis_client(),
        stream_key(conversation_id),
        [{"e": "message", "d": encode(data)}],
        config["STREAM_MAXLEN"],
        config["STREAM_TTL_SECONDS"],
    )
    return ids[0]


def run_text_so_far(conversation_id, run_id, first_event_id: str | None) -> str:
    """Concatenates the deltas a run already published (used when a lost run is failed)."""
    start = first_event_id or "-"
    run = str(run_id)
    parts = []
    for _entry_id, fields in stream_entries(redis_client().xrange(stream_key(conversation_id), min=start)):
        if fields.get("e") == "delta":
            data = json.loads(fields["d"])
            if data.get("run_id") == run:
                parts.append(data["text_chunk"])
    return "".join(parts)
