"""The StreamHub (backend/stream_tail.py) against the real Redis: many subscribers over
two connections (a reader and a listener), each getting every entry after its cursor exactly once, in
order, also while entries are being added and subscribers come and go."""

import json
import random
import threading
import time

import pytest
import redis

from backend.stream_tail import StreamHub, format_event, sse_events
from backend.streams import ZERO_ID, id_before
from tests.helpers import add_stream_entry

BIG = 1000.0  # heartbeat / lifetime that never fire in these tests


@pytest.fixture
def redis_url(app):
    return app.config["REDIS_URL"]


@pytest.fixture
def writer(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def hub(redis_url):
    hub = StreamHub(redis_url)
    yield hub
    hub.stop()


def add(client, key, n, event="delta", start=0) -> list[str]:
    return [
        add_stream_entry(client, key, {"e": event, "d": json.dumps({"i": i})})
        for i in range(start, start + n)
    ]


class Consumer:
    """Reads sse_events() like the SSE view does and records the entry ids it got."""

    def __init__(self, hub, key, cursor, heartbeat=BIG, max_seconds=BIG, first_event=None):
        self.key, self.cursor = key, cursor
        self.gen = sse_events(hub, key, cursor, heartbeat, max_seconds, first_event=first_event)
        self.ids: list[str] = []
        self.events: list[tuple[str, str, str]] = []
        self.comments: list[str] = []
        self.opening = next(self.gen).decode()  # subscribes

    def read_until(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not predicate(self):
            assert time.monotonic() < deadline, f"timed out after {len(self.ids)} entries"
            self._parse(next(self.gen).decode())
        return self

    def until_id(self, entry_id, timeout=10.0):
        return self.read_until(lambda c: entry_id in c.ids, timeout)

    def _parse(self, text):
        for block in text.split("\n\n"):
            if not block:
                continue
            if block.startswith(":"):
                self.comments.append(block[1:].strip())
                continue
            id_line, event_line, data_line = block.split("\n")
            self.ids.append(id_line.removeprefix("id: "))
            self.events.append(
                (self.ids[-1], event_line.removeprefix("event: "), data_line.removeprefix("data: "))
            )

    def close(self):
        self.gen.close()


def after(client, key, cursor) -> list[str]:
    return [entry_id for entry_id, _ in client.xrange(key, min="(" + cursor if cursor != ZERO_ID else "-")]


def wait_for(condition, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for the {what}"
        time.sleep(0.01)


class RecordingReader:
    """Wraps the hub's blocking client: records each XREAD (streams, result) once it returned."""

    def __init__(self, real):
        self.real = real
        self.done: list[tuple[dict, list]] = []

    def xread(self, streams, **kwargs):
        result = self.real.xread(streams, **kwargs)
        self.done.append((dict(streams), result or []))
        return result

    def read_empty(self, key) -> bool:
        """Whether some read of `key` came back with nothing for it."""
        return any(key in streams and key not in dict(result) for streams, result in self.done)


# --- basics ---------------------------------------------------------------------------------


def test_backlog_then_live(hub, writer):
    key = "t:basic"
    old = add(writer, key, 5)
    consumer = Consumer(hub, key, ZERO_ID)
    assert consumer.opening == ": connected\n\n"
    consumer.until_id(old[-1])
    new = add(writer, key, 3, start=5)
    consumer.until_id(new[-1])
    assert consumer.ids == old + new
    # The entry is written out as stored: id, event name, data untouched.
    stored = writer.xrange(key, min=new[0], max=new[0])[0][1]
    assert consumer.events[5] == (new[0], "delta", stored["d"])
    consumer.close()
    assert hub.watched_streams() == 0


def test_cursor_excludes_what_came_before(hub, writer):
    key = "t:cursor"
    written = add(writer, key, 10)
    consumer = Consumer(hub, key, written[3])
    consumer.until_id(written[-1])
    assert consumer.ids == written[4:]
    consumer.close()


def test_stream_that_does_not_exist_yet(hub, writer):
    key = "t:later"
    reads = hub._reader = RecordingReader(hub._reader)
    consumer = Consumer(hub, key, ZERO_ID)
    # The hub reads the stream while it is empty first ("never tail from $" after that).
    wait_for(lambda: reads.read_empty(key), what="hub's read of the empty stream")
    written = add(writer, key, 4)
    consumer.until_id(written[-1])
    assert consumer.ids == written
    consumer.close()


def test_first_event_replaces_the_opening_comment(hub):
    first = format_event("5-0", "resync", '{"reason":"cursor_expired"}')
    consumer = Consumer(hub, "t:first", "5-0", first_event=first)
    assert consumer.opening == 'id: 5-0\nevent: resync\ndata: {"reason":"cursor_expired"}\n\n'
    consumer.close()


def test_heartbeat_and_lifetime(hub, writer):
    started = time.monotonic()
    consumer = Consumer(hub, "t:idle", ZERO_ID, heartbeat=0.2, max_seconds=1.0)
    chunks = list(consumer.gen)  # runs until max_seconds
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 3.0
    assert chunks and set(chunks) == {b": ping\n\n"}
    assert 2 <= len(chunks) <= 5
    assert hub.watched_streams() == 0  # the generator unsubscribed on its way out


def test_several_subscribers_on_one_key_with_different_cursors(hub, writer):
    key = "t:same"
    written = add(writer, key, 20)
    cursors = [ZERO_ID, written[0], written[9], written[18], written[19], id_before(written[5])]
    consumers = [Consumer(hub, key, cursor) for cursor in cursors]
    more = add(writer, key, 10, start=20)
    for consumer in consumers:
        consumer.until_id(more[-1])
        assert consumer.ids == after(writer, key, consumer.cursor)
        assert len(consumer.ids) == len(set(consumer.ids))
    for consumer in consumers:
        consumer.close()
    assert hub.watched_streams() == 0


def test_subscribers_on_other_keys_get_only_their_stream(hub, writer):
    keys = [f"t:many:{i}" for i in range(30)]
    consumers = {key: Consumer(hub, key, ZERO_ID) for key in keys}
    written = {key: add(writer, key, 3) for key in keys}
    for key, consumer in consumers.items():
        consumer.until_id(written[key][-1])
        assert consumer.ids == written[key]
        consumer.close()


def test_unsubscribing_cleans_up(hub, writer):
    a1 = Consumer(hub, "t:a", ZERO_ID)
    a2 = Consumer(hub, "t:a", ZERO_ID)
    b = Consumer(hub, "t:b", ZERO_ID)
    assert hub.watched_streams() == 2
    a1.close()
    assert hub.watched_streams() == 2
    a2.close()
    assert hub.watched_streams() == 1
    assert "t:a" not in hub._subs and "t:a" not in hub._cursors
    # The remaining subscriber still gets its entries; a closed one gets nothing.
    written = add(writer, "t:b", 2)
    add(writer, "t:a", 2)
    b.until_id(written[-1])
    assert b.ids == written
    b.close()
    assert hub.watched_streams() == 0 and hub._subs == {} and hub._cursors == {}


def test_two_connections_for_all_subscribers(hub, writer, redis_url):
    """100 visitors on 50 streams: the hub reads them all over one connection and hears
    of changes over one more (subscribed to the notification channel)."""
    keys = [f"t:conn:{i}" for i in range(50)]
    consumers = [Consumer(hub, key, ZERO_ID) for key in keys for _ in range(2)]
    for key in keys:
        add(writer, key, 2)
    for consumer in consumers:
        consumer.read_until(lambda c: len(c.ids) == 2)

    assert hub._reader.connection_pool._created_connections == 1
    assert hub._listener.connection_pool._created_connections == 1
    for consumer in consumers:
        consumer.close()


def test_a_write_reads_only_the_stream_it_changed(redis_url, writer):
    """No read re-sends every watched stream: an entry on one of 50 streams is fetched by
    a read of that stream alone."""
    hub = StreamHub(redis_url, sweep_seconds=BIG)  # no timed sweep of all 50 in between
    reads = hub._reader = RecordingReader(hub._reader)
    subscribed = threading.Event()  # the listener asks for a sweep once it hears notifications
    request_sweep = hub._request_sweep
    hub._request_sweep = lambda: (request_sweep(), subscribed.set())
    keys = [f"t:only:{i}" for i in range(50)]
    consumers: dict = {}
    try:
        consumers.update((key, Consumer(hub, key, ZERO_ID)) for key in keys)
        assert subscribed.wait(10)
        wait_for(
            lambda: not hub._sweep and set(keys) <= {key for streams, _ in reads.done for key in streams},
            what="a first read of every stream",
        )
        [entry] = add(writer, keys[7], 1)
        consumers[keys[7]].until_id(entry)
        fetched_by = [
            set(streams)
            for streams, result in reads.done
            if any(entry_id == entry for _, entries in result for entry_id, _ in entries)
        ]
        assert fetched_by == [{keys[7]}]
    finally:
        for consumer in consumers.values():
            consumer.close()
        hub.stop()


def test_a_lost_notification_is_caught_by_the_sweep(redis_url, writer):
    """An entry written without its announcement still arrives, at the next sweep."""
    hub = StreamHub(redis_url, sweep_seconds=0.3)
    try:
        consumer = Consumer(hub, "t:sweep", ZERO_ID)
        entry = writer.xadd("t:sweep", {"e": "delta", "d": "{}"})  # not announced
        consumer.until_id(entry, timeout=3)
        consumer.close()
    finally:
        hub.stop()


# --- concurrency ----------------------------------------------------------------------------


def test_concurrent_writer_and_late_subscribers(hub, redis_url):
    """A writer adds 1000 entries over three streams while 20 subscribers join at random
    moments from random earlier cursors: each gets exactly the entries after its cursor."""
    keys = ["t:race:a", "t:race:b", "t:race:c"]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    written: dict[str, list[str]] = {key: [] for key in keys}
    written_lock = threading.Lock()
    writer_started = threading.Event()
    rng = random.Random(1234)
    plans = [(keys[i % 3], rng.uniform(0, 1.2), rng.random()) for i in range(20)]
    results: list = [None] * len(plans)

    def write():
        writer_client = redis.Redis.from_url(redis_url, decode_responses=True)
        writer_started.set()
        for i in range(1000):
            key = keys[i % 3]
            entry_id = add_stream_entry(writer_client, key, {"e": "delta", "d": json.dumps({"i": i})})
            with written_lock:
                written[key].append(entry_id)
            if i % 10 == 0:
                time.sleep(0.012)
        for key in keys:
            add_stream_entry(writer_client, key, {"e": "end", "d": "{}"})
        writer_client.close()

    def subscribe(index, key, delay, pick):
        try:
            time.sleep(delay)
            with written_lock:
                so_far = list(written[key])
            cursor = ZERO_ID if not so_far or pick < 0.1 else so_far[int(pick * len(so_far))]
            consumer = Consumer(hub, key, cursor, max_seconds=30)
            consumer.read_until(lambda c: c.events and c.events[-1][1] == "end", timeout=30)
            consumer.close()
            results[index] = (cursor, consumer.ids)
        except BaseException as exc:  # reported by the assertions below
            results[index] = exc

    writer_thread = threading.Thread(target=write)
    threads = [threading.Thread(target=subscribe, args=(i, *plan)) for i, plan in enumerate(plans)]
    writer_thread.start()
    writer_started.wait()
    for thread in threads:
        thread.start()
    writer_thread.join(60)
    for thread in threads:
        thread.join(60)

    for (key, _, _), result in zip(plans, results, strict=True):
        assert not isinstance(result, BaseException) and result is not None, result
        cursor, got = result
        expected = after(client, key, cursor)
        assert got == expected, f"{key} from {cursor}: got {len(got)}, expected {len(expected)}"
    assert hub.watched_streams() == 0 and hub._subs == {}
    client.close()


class HeldReader:
    """Wraps the hub's reader: can hold an XREAD result before the hub sees it."""

    def __init__(self, real):
        self.real = real
        self.hold = False
        self.holding = threading.Event()
        self.release = threading.Event()

    def xread(self, streams, **kwargs):
        result = self.real.xread(streams, **kwargs)
        if self.hold and result:
            self.hold = False
            self.holding.set()
            self.release.wait(10)
        return result


def test_resubscribing_during_an_inflight_read_leaves_no_gap(hub, writer):
    """A visitor reconnects (Last-Event-ID) while the hub's XREAD, issued for the old
    connection from a later position, is returning new entries: the reconnected
    visitor must still get the entries between its cursor and that position."""
    key = "t:reconnect"
    held = HeldReader(hub._reader)
    hub._reader = held
    e1, e2, e3 = add(writer, key, 3)
    first = Consumer(hub, key, ZERO_ID)
    first.until_id(e3)
    wait_for(lambda: hub._cursors.get(key) == e3, what="hub's read up to e3")

    held.hold = True
    [e4] = add(writer, key, 1, start=3)  # the hub's read (from e3) returns e4 ...
    assert held.holding.wait(5)
    first.close()  # ... while the old connection goes away
    second = Consumer(hub, key, e1)  # the reconnect, from what the visitor had seen
    held.release.set()
    second.until_id(e4)
    assert second.ids == [e2, e3, e4]
    second.close()


def test_a_feed_hands_over_every_batch_once_in_order_between_threads():
    """The hub's thread hands batches over while the SSE response waits and takes them: none
    is lost or repeated, whatever the interleaving; an idle wait ends empty after its timeout."""
    from backend.stream_tail import Subscription

    feed = Subscription("k", ZERO_ID)
    started = time.monotonic()
    assert feed.next_batch(0.05) is None
    assert time.monotonic() - started >= 0.04

    def hand_over():
        for n in range(5000):
            feed.put([(f"{n}-0", {})])
            if n % 97 == 0:
                time.sleep(0.001)  # let the reader catch up and wait again
        feed.end("done")

    producer = threading.Thread(target=hand_over)
    producer.start()
    taken: list[str] = []
    while True:
        batch = feed.next_batch(5)
        assert batch is not None, "a hand-over was missed: the wait timed out"
        if not batch:
            break  # the end marker
        taken += [entry_id for entry_id, _ in batch]
    producer.join()
    assert taken == [f"{n}-0" for n in range(5000)]
    assert feed.pending == 0 and feed.ended == "done"


def test_end_all_ends_every_held_feed_and_every_later_one(hub, writer):
    """The server is stopping: each held SSE response ends now (its client reconnects
    elsewhere with Last-Event-ID), and so does one opened afterwards, without a wait."""
    held = [Consumer(hub, f"t:stop:{n}", ZERO_ID) for n in range(3)]
    assert hub.watched_streams() == 3
    assert hub.end_all("server_stopping") == 3
    for consumer in held:
        assert list(consumer.gen) == []  # ended, no ping or event after it
    assert hub.watched_streams() == 0
    started = time.monotonic()
    late = Consumer(hub, "t:stop:late", ZERO_ID)
    assert late.opening == ": connected\n\n" and list(late.gen) == []
    assert time.monotonic() - started < 1 and hub.watched_streams() == 0
