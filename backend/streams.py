"""The event bus: one Redis Stream per conversation.

Entries carry two fields: `e`, the event name, and `d`, its data already
serialised as one line of JSON, so the SSE tail writes it out untouched.
Streams are capped (approximate MAXLEN) and expire STREAM_TTL_SECONDS after
their last run event, which keeps a finished run resumable for at least an hour.
"""

import json
import logging
import re
import threading
import time
import uuid
from typing import NamedTuple, cast

import redis
from flask import current_app

from backend.extensions import app_state, redis_client
from backend.outages import retry_during_outage

log = logging.getLogger(__name__)
ZERO_ID = "0-0"
_ID_RE = re.compile(r"[0-9]{1,20}(?:-[0-9]{1,20})?")
MAX_ID_PART = 2**64 - 1  # both halves of a stream id are unsigned 64-bit
# Every round trip that writes conversation streams also publishes their keys here (one
# message, `announcement`), so the SSE hubs (backend.stream_tail) read only the streams that changed.
NOTIFY_CHANNEL = "streams:changed"


def stream_key(conversation_id: uuid.UUID | str) -> str:
    return f"conv:{conversation_id}:events"


def cancel_key(run_id: uuid.UUID | str) -> str:
    return f"run:{run_id}:cancel"


def inbox_key(workspace_id: uuid.UUID | str) -> str:
    """The owner's live inbox of a workspace (backend.services.inbox_events writes it). The
    braces keep the stream and its listening mark in one Redis Cluster slot."""
    return f"inbox:{{{workspace_id}}}:events"


def inbox_listening_key(workspace_id: uuid.UUID | str) -> str:
    """Set while someone may read the inbox: without it, events are not written at all."""
    return f"inbox:{{{workspace_id}}}:listening"


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
    return last_id_of(stream_key(conversation_id))


def last_id_of(key: str) -> str:
    entries = stream_entries(redis_client().xrevrange(key, count=1))
    return entries[0][0] if entries else ZERO_ID


def cursor_is_lost(conversation_id, cursor: str) -> bool:
    """True when entries after `cursor` may have been trimmed or expired away."""
    return cursor_lost_in(stream_key(conversation_id), cursor)


def cursor_lost_in(key: str, cursor: str) -> bool:
    if parse_id(cursor) == (0, 0):
        return False
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


class StreamWrite(NamedTuple):
    """Entries for one stream in a round trip."""

    key: str
    entries: list[dict]
    maxlen: int
    ttl: int | None  # refreshed when given
    flag_key: str | None  # a run's cancel flag, read in the same round trip


def announcement(keys) -> str:
    """The NOTIFY_CHANNEL message naming the streams one round trip wrote (keys hold no spaces)."""
    return " ".join(dict.fromkeys(keys))


def announced_keys(message: str) -> list[str]:
    return message.split(" ")


def _queue_writes(pipe, writes: list[StreamWrite]) -> int:
    """Adds to `pipe` the XADDs of every write, ONE announcement to the SSE hubs naming all
    their streams, the TTL refreshes asked for and ONE read of the cancel flags given;
    returns the number of replies."""
    size = 0
    for write in writes:
        for fields in write.entries:
            pipe.xadd(write.key, fields, maxlen=write.maxlen, approximate=True)
        if write.ttl is not None:
            pipe.expire(write.key, write.ttl)
        size += len(write.entries) + (write.ttl is not None)
    pipe.publish(NOTIFY_CHANNEL, announcement(write.key for write in writes))
    flag_keys = _flag_keys(writes)
    if flag_keys:
        pipe.mget(flag_keys)
    return size + 1 + bool(flag_keys)


def _read_writes(replies: list, writes: list[StreamWrite]) -> list[tuple[list[str], bool]]:
    """Each write's entry ids and whether its cancel flag is set, from `_queue_writes`' replies."""
    flag_keys = _flag_keys(writes)
    values = replies[-1] if flag_keys else []
    flags_set = {key for key, value in zip(flag_keys, values, strict=True) if value is not None}
    results, start = [], 0
    for write in writes:
        ids = replies[start : start + len(write.entries)]
        results.append((ids, bool(write.flag_key) and write.flag_key in flags_set))
        start += len(write.entries) + (write.ttl is not None)
    return results


def _flag_keys(writes: list[StreamWrite]) -> list[str]:
    return [write.flag_key for write in writes if write.flag_key]


def append_entries(
    client,
    key: str,
    entries: list[dict],
    maxlen: int,
    ttl: int | None = None,
    flag_key: str | None = None,
    inbox: list["InboxWrite"] | None = None,
) -> tuple[list[str], bool]:
    """XADDs `entries` and announces them to the SSE hubs in one round trip, refreshing the
    key's TTL when `ttl` is given and reading `flag_key` (a run's cancel flag) in the same
    trip, with `inbox` events riding along. Returns (ids, flag is set)."""
    writes = [StreamWrite(key, entries, maxlen, ttl, flag_key)]
    pipe = client.pipeline(transaction=False)
    size = _queue_writes(pipe, writes)
    if not inbox:
        return _read_writes(pipe.execute(), writes)[0]
    queue_inbox_writes(pipe, inbox)
    replies = _checked(pipe.execute(raise_on_error=False), size)
    return _read_writes(replies[:size], writes)[0]


def _checked(replies: list, size: int) -> list:
    """Raises the first error among the first `size` replies (a stream write's, which its
    caller handles as before); logs an inbox write's error (the events are lost)."""
    for reply in replies[:size]:
        if isinstance(reply, Exception):
            raise reply
    for reply in replies[size:]:
        if isinstance(reply, Exception):
            log.warning("inbox events not written: %s", reply)
    return replies


# One workspace's inbox events of one commit: (workspace id, [(event name, data as JSON)]),
# with the stream's cap and time to live.
InboxWrite = tuple[str, list[tuple[str, str]], int, int]

# Writes an inbox's events only while its listening mark exists (someone may read them),
# so a workspace whose owner never opens the inbox costs one EXISTS per commit and
# announces nothing to the hubs. KEYS: stream, mark. ARGV: cap, ttl, channel, name, data...
_INBOX_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
for i = 4, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i], 'd', ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], KEYS[1])
return (#ARGV - 3) / 2
"""


def queue_inbox_writes(pipe, writes: list[InboxWrite]) -> int:
    """Adds to `pipe` one conditional write per workspace (see _INBOX_SCRIPT), each
    workspace's events in the order they were committed."""
    merged: dict[str, tuple[list[tuple[str, str]], int, int]] = {}
    for workspace_id, events, maxlen, ttl in writes:
        merged.setdefault(workspace_id, ([], maxlen, ttl))[0].extend(events)
    for workspace_id, (events, maxlen, ttl) in merged.items():
        args = [maxlen, ttl, NOTIFY_CHANNEL, *(part for event in events for part in event)]
        pipe.eval(_INBOX_SCRIPT, 2, inbox_key(workspace_id), inbox_listening_key(workspace_id), *args)
    return len(merged)


class StreamWriter:
    """One per process (a thread, a greenlet under gevent): sends what every batched
    RunPublisher of the process has queued in ONE pipelined round trip, so five hundred runs
    each emitting a token cost one round trip, not five hundred. Each run's entries keep
    their order (one writer, one batch per run at a time). Shares its condition with the
    publishers, which wait on it for their queue to drain."""

    INBOX_MAX_WAIT = 0.2  # seconds inbox events wait for a round trip to ride along with
    # Under load, round trips start at least this far apart (seconds), and whatever is queued
    # meanwhile rides along: a writer that has been idle sends at once.
    MIN_INTERVAL = 0.005

    def __init__(self, client):
        self._client = client
        self.cond = threading.Condition()
        self._waiting: dict[RunPublisher, None] = {}  # publishers with queued entries, in order
        self._inbox: list[InboxWrite] = []  # owners' inbox events, sent along with the next batch
        self._inbox_due = 0.0
        self._next_send_at = 0.0
        self._thread: threading.Thread | None = None

    def wake(self, publisher: "RunPublisher") -> None:
        """Called with `cond` held, after `publisher` queued an entry."""
        self._waiting[publisher] = None
        self._start()
        self.cond.notify_all()

    def queue_inbox(self, writes: list["InboxWrite"]) -> None:
        """Sends owners' inbox events with the next round trip that happens anyway: a batch
        of deltas, or a run's `message_start`/`message_end` (which follow the commits that
        make run events), else after INBOX_MAX_WAIT. Fire and forget: while Redis is
        unreachable they are dropped, and a reconnecting inbox gets `resync`."""
        with self.cond:
            if not self._inbox:
                self._inbox_due = time.monotonic() + self.INBOX_MAX_WAIT
            self._inbox.extend(writes)
            self._start()
            self.cond.notify_all()

    def take_inbox(self) -> list["InboxWrite"]:
        """The inbox events waiting (for a publisher's own round trip)."""
        with self.cond:
            inbox, self._inbox = self._inbox, []
            return inbox

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._write_loop, daemon=True, name="stream-writer")
            self._thread.start()

    def _write_loop(self) -> None:
        while True:
            # (a sleep, not a wait on `cond`: the deltas queued meanwhile do not wake the writer)
            if (delay := self._next_send_at - time.monotonic()) > 0:
                time.sleep(delay)
            with self.cond:
                while not self._waiting:
                    if not self._inbox:
                        self.cond.wait()
                    elif (wait := self._inbox_due - time.monotonic()) > 0:
                        self.cond.wait(wait)
                    else:
                        break
                publishers = list(self._waiting)
                self._waiting.clear()
                batches = [publisher.take_batch() for publisher in publishers]
                inbox, self._inbox = self._inbox, []
            self._next_send_at = time.monotonic() + self.MIN_INTERVAL
            try:
                # (a batch without inbox events is sent exactly as before they existed)
                sent = self._send(publishers, batches, inbox) if inbox else self._send(publishers, batches)
                flags, failure = sent, None
            except Exception as exc:  # surfaced to each run loop at its next publish
                flags, failure = [False] * len(publishers), exc
                if inbox:
                    log.warning("%d inbox event(s) lost: %s", len(inbox), exc)
            with self.cond:
                for publisher, flag in zip(publishers, flags, strict=True):
                    publisher.batch_sent(flag, failure)
                self.cond.notify_all()

    def _send(
        self,
        publishers: list["RunPublisher"],
        batches: list[list[dict]],
        inbox: list["InboxWrite"] | None = None,
    ) -> list[bool]:
        writes = [
            StreamWrite(p.key, batch, p.maxlen, None, p.cancel_flag_key)
            for p, batch in zip(publishers, batches, strict=True)
        ]
        pipe = self._client.pipeline(transaction=False)
        size = _queue_writes(pipe, writes)
        queue_inbox_writes(pipe, inbox or [])
        # A run's write failing fails every run of the batch, as before.
        replies = _checked(pipe.execute(raise_on_error=False), size)
        return [flag_set for _ids, flag_set in _read_writes(replies[:size], writes)]


def stream_writer() -> StreamWriter:
    """The current app's writer (made on first use: only worker processes stream runs)."""
    return app_state("stream_writer", lambda app: StreamWriter(app.extensions["redis"].client))


class RunPublisher:
    """Publishes one run's events, in order, to the conversation's stream.

    By default every event is written at once and its entry id returned. With
    `batched=True` (the run loop), deltas are queued for the process's StreamWriter, which
    sends whatever has accumulated, for every run, in one pipelined round trip: one chunk
    at a time while the model is slower than Redis, many at once when it is faster, so the
    token loop never waits on Redis. Each batch also reads the run's cancel flag, so
    checking for a cancel costs nothing extra. Events whose id the caller needs
    (message_start, message_end) are written synchronously, after everything queued
    before them.
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
        self.first_event_id: str | None = None  # message_start's, once written
        self.cancel_flag_key = cancel_flag_key
        config = current_app.config
        self.maxlen = config["STREAM_MAXLEN"]
        self._ttl = config["STREAM_TTL_SECONDS"]
        self._redis = redis_client()
        self._pending: list[dict] = []
        self._busy = False
        self._failure: Exception | None = None
        self._writer = stream_writer() if batched else None
        self._gap = False  # deltas were lost while Redis was unreachable
        self._write_retry_seconds = config["STREAM_WRITE_RETRY_SECONDS"]

    # -- queueing (batched) ---------------------------------------------------------------
    def _enqueue(self, event: str, data: dict) -> str | None:
        writer = self._writer
        if writer is None:
            return self._write_now(event, data, refresh_ttl=False)
        self.count += 1
        with writer.cond:
            if self._failure is not None:
                raise self._failure
            self._pending.append({"e": event, "d": encode(data)})
            writer.wake(self)
            backlog = len(self._pending)
        if backlog % self.YIELD_EVERY == 0:
            time.sleep(0)
        return None  # batched: the entry's id is known once the writer has written it

    def take_batch(self) -> list[dict]:
        """The writer takes what is queued (with its condition held); after a loss, the
        batch starts with a `resync`."""
        batch, self._pending = self._pending, []
        if self._gap:
            batch, self._gap = [gap_entry(self.run_id), *batch], False
        self._busy = True
        return batch

    def batch_sent(self, flag_set: bool, failure: Exception | None) -> None:
        """The writer reports a batch sent, or failed (with its condition held): while Redis
        is away the batch's deltas are lost and the next write says so; any other failure
        reaches the run loop at its next publish."""
        self._busy = False
        if isinstance(failure, redis.RedisError):
            self._gap = True
        elif failure is not None:
            self._failure = failure
        elif flag_set:
            self.cancel_requested = True

    def _drain(self) -> None:
        if self._writer is None:
            return
        with self._writer.cond:
            while self._pending or self._busy:
                self._writer.cond.wait()
            if self._failure is not None:
                raise self._failure

    def _send(self, batch: list[dict], refresh_ttl: bool = False) -> list[str]:
        gap = self._gap
        if gap:
            batch = [gap_entry(self.run_id), *batch]
        # The commit that made run.started (or run.finished) just queued it: it goes along.
        inbox = self._writer.take_inbox() if self._writer is not None else None
        try:
            ids, flag_set = append_entries(
                self._redis,
                self.key,
                batch,
                self.maxlen,
                self._ttl if refresh_ttl else None,
                self.cancel_flag_key,
                inbox,
            )
        except Exception:
            if inbox:
                log.warning("%d inbox event(s) lost with a failed stream write", len(inbox))
            raise
        if gap:
            self._gap = False
            ids = ids[1:]
        if flag_set:
            self.cancel_requested = True
        return ids

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
        """Waits until what is still queued is sent."""
        self._drain()

    # -- the events of API.md -----------------------------------------------------------
    def message_start(self) -> str:
        data = {"run_id": self.run_id, "message_id": self.message_id}
        self.first_event_id = self._write_now("message_start", data)
        return self.first_event_id

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

    def handoff_requested(self, reason: str) -> str | None:
        return self._enqueue("handoff", {"status": "requested", "reason": reason})

    def agent_mode(self, mode: str, by: str) -> str | None:
        return self._enqueue("agent_mode", agent_mode_event(mode, by))

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


def publish_event(conversation_id, event: str, data: dict) -> str:
    """Appends one event that belongs to no run (an owner's message, a change of agent
    mode) to the conversation's stream; returns its entry id."""
    config = current_app.config
    ids, _ = append_entries(
        redis_client(),
        stream_key(conversation_id),
        [{"e": event, "d": encode(data)}],
        config["STREAM_MAXLEN"],
        config["STREAM_TTL_SECONDS"],
    )
    return ids[0]


def publish_message(conversation_id, message) -> str:
    """A whole message that is not a run's reply (an owner writing to the visitor):
    event `message` with {message_id, role, content, timestamp}."""
    data = {
        "message_id": str(message.id),
        "role": message.role,
        "content": message.content,
        "timestamp": message.timestamp.isoformat(),
    }
    return publish_event(conversation_id, "message", data)


def agent_mode_event(mode: str, by: str) -> dict:
    """The data of event `agent_mode`: the owner took over or handed back (by "owner"), or
    the agent paused the conversation when it asked for a person (by "agent")."""
    return {"mode": mode, "by": by}


def run_start_cursor(conversation_id, run_id, page: int = 500) -> str:
    """A cursor from which a stream shows a running run from its `message_start`, found by
    reading the stream newest first. Runs of a conversation stream one at a time, so an
    earlier run's entry, met first, means the run has written nothing yet: the newest entry
    is the cursor. Its `message_start` trimmed away: the oldest entry kept."""
    client, key, run = redis_client(), stream_key(conversation_id), str(run_id)
    newest: str | None = None
    before, seen_run = "+", False
    while entries := stream_entries(client.xrevrange(key, max=before, count=page)):
        newest = newest or entries[0][0]
        for entry_id, fields in entries:
            writer = json.loads(fields.get("d") or "{}").get("run_id")
            if writer == run and fields.get("e") == "message_start":
                return id_before(entry_id)
            if writer is not None and writer != run:
                return newest
            seen_run = seen_run or writer == run
        before = "(" + entries[-1][0]
    return ZERO_ID if seen_run or newest is None else newest


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
