"""StreamHub against real Redis: a stream whose visitors all left and one came back
with an older cursor while the hub's read was in flight loses no entry."""

import os
import queue
import threading
import time

import redis

from backend.stream_tail import StreamHub
from tests.helpers import add_stream_entry


class GatedReader:
    """Wraps the hub's blocking reader: each XREAD waits for the test's go-ahead."""

    def __init__(self, real):
        self.real = real
        self.calls: queue.SimpleQueue = queue.SimpleQueue()
        self.go = threading.Event()

    def xread(self, streams, **kwargs):
        self.calls.put(dict(streams))
        self.go.wait(10)
        return self.real.xread(streams, **kwargs)


def test_resubscribing_with_an_older_cursor_during_a_read_leaves_no_gap():
    url = os.environ["TEST_REDIS_URL"]
    r = redis.Redis.from_url(url, decode_responses=True)
    key = "conv:hub-race-test:events"
    ids = [add_stream_entry(r, key, {"e": "delta", "d": str(i)}) for i in range(5)]
    hub = StreamHub(url)
    reader = GatedReader(hub._reader)
    hub._reader = reader

    first = hub.subscribe(key, ids[4])
    assert reader.calls.get(timeout=5)[key] == ids[4]  # the hub's read is in flight from ids[4]
    hub.unsubscribe(first)
    second = hub.subscribe(key, ids[1])  # a visitor resuming from an older id
    newest = add_stream_entry(r, key, {"e": "delta", "d": "5"})
    reader.go.set()  # the in-flight read returns the new entry, read from the old cursor

    received = []
    deadline = time.monotonic() + 5
    while newest not in received and time.monotonic() < deadline:
        batch = second.next_batch(0.2) or []
        received += [entry_id for entry_id, _ in batch if entry_id not in received]
    hub.unsubscribe(second)
    hub.stop()
    r.delete(key)
    assert received == [*ids[2:], newest]
