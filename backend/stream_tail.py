"""Tailing conversation streams for Server-Sent Events: many visitors, few connections.

Each process has one StreamHub. Every writer of conversation streams also PUBLISHes the
keys it wrote on one channel (backend.streams.NOTIFY_CHANNEL) in the same round trip, so
the hub needs no blocking read over every watched stream: a listener thread (a greenlet
under gunicorn's gevent worker) collects the keys that changed, and a reader thread
XREADs just those keys, from the cursors it keeps, and hands the entries to the
visitors' queues. A quiet stream costs nothing per event of another stream, and 10,000
visitors cost two Redis connections plus a small pool. Each key is also read once when
its first visitor subscribes, and every watched key is swept now and then (and right
after the listener reconnects), so a lost notification delays an entry, never loses it.
The hub only moves forward from ids it has read ("never tail from $"), and every visitor
drops ids it already sent, so a late subscriber's backlog and the live feed can overlap
but never leave a gap.
"""

import logging
import socket
import threading
import time
from typing import cast

import redis
from flask import Flask, current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from backend import metrics
from backend.extensions import blocking_redis
from backend.streams import NOTIFY_CHANNEL, StreamEntry, announced_keys, parse_id

log = logging.getLogger(__name__)


def _read_reply(reply: object) -> list[tuple[str, list[StreamEntry]]]:
    """An XREAD reply: (key, entries) for each stream with new entries.
    redis-py types it for both settings of decode_responses and for RESP3's map; the hub's
    reader decodes and speaks RESP2 (lists)."""
    return cast(list[tuple[str, list[StreamEntry]]], reply or [])


class Subscription:
    """One SSE connection's feed. At most `max_pending` entries wait for a connection that
    does not read: past that it is ended (and `on_overflow` closes its socket, since its
    response is stuck writing), so a stuck client costs bounded memory.

    A plain list and an Event, not a queue: ten thousand idle feeds each hold one, and
    gevent's SimpleQueue costs ~2.8 KB where these cost ~0.2 KB. The hub appends and the
    SSE response pops, each one atomic step, so no entry is lost between the two."""

    __slots__ = (
        "key",
        "cursor",
        "backlog",
        "batches",
        "ready",
        "pending",
        "max_pending",
        "on_overflow",
        "ended",
    )

    def __init__(self, key: str, cursor: str, max_pending: int | None = None, on_overflow=None):
        self.key = key
        self.cursor = cursor
        self.backlog: list | None = None
        self.batches: list[list] = []  # what the hub handed over, oldest first
        self.ready = threading.Event()  # set after every hand-over
        self.pending = 0
        self.max_pending = max_pending
        self.on_overflow = on_overflow
        self.ended: str | None = None  # why the hub stopped feeding this connection

    def put(self, entries: list) -> None:
        if self.ended:
            return
        self.pending += len(entries)
        if self.max_pending is not None and self.pending > self.max_pending:
            self.end("overflow")
            if self.on_overflow is not None:
                self.on_overflow()
            return
        self._hand_over(entries)

    def end(self, reason: str) -> None:
        """Stops the feed; the SSE response ends at its next read (the client reconnects)."""
        self.ended = reason
        self._hand_over([])

    def _hand_over(self, batch: list) -> None:
        self.batches.append(batch)
        self.ready.set()

    def next_batch(self, timeout: float) -> list | None:
        """The oldest batch handed over, waiting up to `timeout` for one; None if none came."""
        if self.backlog:
            batch, self.backlog = self.backlog, None
            return batch
        deadline = time.monotonic() + timeout
        while not self.batches:
            self.ready.clear()
            # A hand-over between the look above and the clear is seen here; one after it
            # sets the event again, so the wait cannot miss it. A wake-up may also come
            # late, from a hand-over already taken: then the list is empty and it waits on.
            if not self.batches and not self.ready.wait(max(deadline - time.monotonic(), 0)):
                return None
        batch = self.batches.pop(0)
        self.pending -= len(batch)
        return batch


class StreamHub:
    LISTEN_POLL_SECONDS = 1.0  # how soon the listener notices stop()

    def __init__(
        self, redis_url: str, short: redis.Redis | None = None, sweep_seconds: float = 5.0, batch: int = 500
    ):
        """`short`: a pooled client for the occasional look-up (the app's, which the app
        closes); by default one of the hub's own."""
        self.sweep_seconds = sweep_seconds
        self.batch = batch
        # A lost connection is not retried by redis-py: the hub must see it (see _lost_redis).
        self._reader = redis.Redis.from_url(
            redis_url, decode_responses=True, socket_timeout=30, retry=Retry(NoBackoff(), 0)
        )
        self._listener = redis.Redis.from_url(
            redis_url, decode_responses=True, socket_timeout=30, retry=Retry(NoBackoff(), 0)
        )
        self._short = short or blocking_redis(redis_url, 4)
        self._clients = [self._reader, self._listener] + ([] if short else [self._short])
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = {}
        self._cursors: dict[str, str] = {}
        self._changed: set[str] = set()  # watched keys with news since the last read
        self._sweep = True  # read every watched key at the next pass
        self._news = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._closing: str | None = None  # set by end_all: the server is stopping

    def subscribe(
        self, key: str, cursor: str, max_pending: int | None = None, on_overflow=None
    ) -> Subscription:
        sub = Subscription(key, cursor, max_pending, on_overflow)
        with self._lock:
            if self._closing:
                sub.end(self._closing)  # a stream opened while the server stops ends at once
                return sub
            self._subs.setdefault(key, set()).add(sub)
            hub_cursor = self._cursors.get(key)
            if hub_cursor is None:
                self._cursors[key] = cursor
                self._changed.add(key)
            self._ensure_threads()
        if hub_cursor is None:
            self._news.set()
        elif parse_id(hub_cursor) > parse_id(cursor):
            try:
                # The hub already read past this visitor's cursor: fetch the part it missed.
                sub.backlog = self._short.xrange(key, min="(" + cursor, max=hub_cursor)
            except redis.RedisError:
                # Redis went away: the stream ends at once, cleanly, and the client reconnects.
                log.warning("stream hub cannot reach Redis; ending a new stream", exc_info=True)
                sub.end("redis_unreachable")
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.key]
                    del self._cursors[sub.key]

    def end_all(self, reason: str) -> int:
        """Ends every feed, and every one opened from now on: the server is stopping. Each
        SSE response finishes at once (instead of holding the process until it is killed)
        and its client reconnects, to a process still serving, with Last-Event-ID."""
        with self._lock:
            self._closing = reason
            subs = self._all_subs()
        for sub in subs:
            sub.end(reason)
        return len(subs)

    def _all_subs(self) -> list[Subscription]:
        """Every current subscription (call with the lock held)."""
        return [sub for watched in self._subs.values() for sub in watched]

    def watched_streams(self) -> int:
        with self._lock:
            return len(self._cursors)

    def stop(self, timeout: float = 5.0) -> None:
        """Ends the hub's threads and closes its connections."""
        self._stopped.set()
        self._news.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)
        for client in self._clients:
            client.close()

    def _ensure_threads(self) -> None:
        if self._stopped.is_set():
            raise RuntimeError("the stream hub was stopped")
        if self._threads and all(thread.is_alive() for thread in self._threads):
            return
        self._sweep = True  # a thread died: whatever it missed is read again
        self._threads = [
            threading.Thread(target=self._listen, name="stream-hub-listener", daemon=True),
            threading.Thread(target=self._run, name="stream-hub-reader", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- the listener: which watched streams changed ----------------------------------------
    def _listen(self) -> None:
        while not self._stopped.is_set():
            pubsub = self._listener.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(NOTIFY_CHANNEL)
                self._request_sweep()  # notifications sent while not subscribed are lost
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=self.LISTEN_POLL_SECONDS)
                    if message is not None:
                        self._note_changes(announced_keys(message["data"]))
            except redis.RedisError:
                log.warning("stream hub lost its notifications; ending its feeds", exc_info=True)
                self._lost_redis()
                time.sleep(0.5)
            finally:
                pubsub.close()

    def _note_changes(self, keys: list[str]) -> None:
        with self._lock:
            watched = [key for key in keys if key in self._cursors]
            if not watched:
                return
            self._changed.update(watched)
        self._news.set()

    def _request_sweep(self) -> None:
        self._sweep = True
        self._news.set()

    # -- the reader: XREAD the changed streams, hand entries to their visitors ------------------
    def _run(self) -> None:
        last_sweep = time.monotonic()
        while not self._stopped.is_set():
            woken = self._news.wait(max(self.sweep_seconds - (time.monotonic() - last_sweep), 0))
            with self._lock:
                self._news.clear()
                if self._sweep or not woken:
                    keys, self._sweep, last_sweep = set(self._cursors), False, time.monotonic()
                else:
                    keys = self._changed & self._cursors.keys()
                self._changed.clear()
                streams = {key: self._cursors[key] for key in keys}
            if streams and not self._stopped.is_set():
                self._read(streams)

    def _read(self, streams: dict[str, str]) -> None:
        try:
            # redis-py asks for a dict of its own key and id unions, which a dict[str, str]
            # is not (dict is invariant), though it is exactly what XREAD takes.
            result = self._reader.xread(streams, count=self.batch)  # type: ignore[arg-type]
        except redis.RedisError:
            log.exception("stream hub read failed; ending its feeds")
            self._lost_redis()
            time.sleep(0.5)
            return
        for key, entries in _read_reply(result):
            with self._lock:
                # Only entries read from the key's current cursor count: if its visitors all
                # left and a new one came during the read, the key restarted at the new
                # visitor's cursor, and these entries (read from the old one) would skip
                # what lies between the two. The next read starts from the new cursor.
                if self._cursors.get(key) != streams[key]:
                    continue
                self._cursors[key] = entries[-1][0]
                subs = list(self._subs.get(key, ()))
                if len(entries) >= self.batch:  # there may be more: read on at once
                    self._changed.add(key)
                    self._news.set()
            for sub in subs:
                sub.put(entries)

    def _lost_redis(self) -> None:
        """Ends every feed after the connection to Redis broke: entries may have been lost
        (a restart without persistence), so each client reconnects with Last-Event-ID and
        the stream's start decides again between resuming and `resync`."""
        with self._lock:
            subs = self._all_subs()
            self._subs.clear()
            self._cursors.clear()
            self._changed.clear()
        for sub in subs:
            sub.end("redis_unreachable")


def init_hub(app: Flask) -> None:
    """Gives the app its own hub (its read loop starts with the first subscriber)."""
    app.extensions["sse_hub"] = StreamHub(app.config["REDIS_URL"], short=app.extensions["redis"].client)


def get_hub() -> StreamHub:
    """The current app's hub."""
    return current_app.extensions["sse_hub"]


def format_event(entry_id: str, event: str, data: str) -> str:
    return f"id: {entry_id}\nevent: {event}\ndata: {data}\n\n"


def sse_events(
    hub: StreamHub,
    key: str,
    cursor: str,
    heartbeat: float,
    max_seconds: float,
    first_event: str | None = None,
    gauge: metrics.AppMetrics | None = None,
    max_pending: int | None = None,
    on_overflow=None,
):
    """Yields SSE text (bytes, ready for the socket) from `cursor` on; a `: ping` comment
    after `heartbeat` idle seconds.
    `gauge` (the app's metric state; the generator runs outside the app context) counts
    the open stream. It ends when the hub ends its feed (Redis lost, client not reading)."""
    if gauge is not None:
        gauge.sse_stream_opened()
    sub = hub.subscribe(key, cursor, max_pending, on_overflow)
    last = parse_id(cursor)
    try:
        yield (first_event or ": connected\n\n").encode()
        started = last_sent = time.monotonic()
        while not sub.ended:
            now = time.monotonic()
            if now - started >= max_seconds:
                return
            wait = min(last_sent + heartbeat - now, started + max_seconds - now)
            batch = sub.next_batch(wait)
            if batch is None:
                if time.monotonic() - last_sent >= heartbeat:
                    yield b": ping\n\n"
                    last_sent = time.monotonic()
                continue
            out = []
            for entry_id, fields in batch:
                entry = parse_id(entry_id)
                if entry <= last:
                    continue
                last = entry
                out.append(format_event(entry_id, fields["e"], fields["d"]))
            if out:
                yield "".join(out).encode()
                last_sent = time.monotonic()
    finally:
        hub.unsubscribe(sub)
        if gauge is not None:
            gauge.sse_stream_closed()


def stuck_client_guard(environ: dict, send_buffer_bytes: int):
    """Caps the kernel's send buffer of the request's socket (gunicorn puts it in the
    environ) and returns a callable that shuts the socket, which ends a response stuck
    writing to a client that does not read; None outside gunicorn. With the cap, a stuck
    client holds at most that many bytes in the kernel, then SSE_MAX_PENDING_ENTRIES in
    the hub, then is cut off (autotuning would let the kernel buffer megabytes first)."""
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return None
    if send_buffer_bytes > 0:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)

    def close() -> None:
        log.warning("closing an SSE connection whose client stopped reading")
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    return close
