"""The event bus (backend/streams.py) against the real Redis: the payloads RunPublisher
writes, trimming and expiry, and the cursor helpers."""

import json
import time
import uuid

import pytest

from backend.extensions import redis_client
from backend.streams import (
    NOTIFY_CHANNEL,
    ZERO_ID,
    RunPublisher,
    StreamWriter,
    announced_keys,
    cancel_key,
    cursor_is_lost,
    id_before,
    is_valid_id,
    last_entry_id,
    parse_id,
    publish_event,
    run_start_cursor,
    run_text_so_far,
    stream_key,
    stream_writer,
)


@pytest.fixture
def ids():
    return uuid.uuid4(), uuid.uuid4(), uuid.uuid4()  # conversation, run, reply message


def entries(conversation_id) -> list[tuple[str, str, dict]]:
    out = []
    for entry_id, fields in redis_client().xrange(stream_key(conversation_id)):
        assert set(fields) == {"e", "d"}
        assert "\n" not in fields["d"]  # one line of JSON, written out untouched by the SSE tail
        out.append((entry_id, fields["e"], json.loads(fields["d"])))
    return out


def test_run_publisher_writes_the_api_payloads(ids):
    conversation_id, run_id, message_id = ids
    publisher = RunPublisher(conversation_id, run_id, message_id)
    returned = [
        publisher.message_start(),
        publisher.delta("Hello"),
        publisher.tool_call("call_1", "get_booking_link", {"when": "tomorrow"}),
        publisher.tool_result("call_1", "get_booking_link", "ok", {"link": "https://calendly.com/x"}, None),
        publisher.tool_result("call_2", "list_services", "error", None, "boom"),
        publisher.error("llm_connection", "The connection broke"),
        publisher.message_end("Hello", "failed", False, {"total_tokens": 7}),
    ]
    run, message = str(run_id), str(message_id)
    stored = entries(conversation_id)
    assert [entry_id for entry_id, _, _ in stored] == returned
    assert publisher.count == 7
    assert [(event, data) for _, event, data in stored] == [
        ("message_start", {"run_id": run, "message_id": message}),
        ("delta", {"run_id": run, "message_id": message, "text_chunk": "Hello"}),
        (
            "tool_call",
            {"run_id": run, "id": "call_1", "tool": "get_booking_link", "args": {"when": "tomorrow"}},
        ),
        (
            "tool_result",
            {
                "run_id": run,
                "id": "call_1",
                "tool": "get_booking_link",
                "status": "ok",
                "data": {"link": "https://calendly.com/x"},
                "error": None,
            },
        ),
        (
            "tool_result",
            {
                "run_id": run,
                "id": "call_2",
                "tool": "list_services",
                "status": "error",
                "data": None,
                "error": "boom",
            },
        ),
        ("error", {"run_id": run, "code": "llm_connection", "message": "The connection broke"}),
        (
            "message_end",
            {
                "run_id": run,
                "message_id": message,
                "full_text": "Hello",
                "status": "failed",
                "degraded": False,
                "usage": {"total_tokens": 7},
            },
        ),
    ]


def test_unicode_and_newlines_stay_on_one_line(ids):
    conversation_id, run_id, message_id = ids
    publisher = RunPublisher(conversation_id, run_id, message_id)
    chunk = 'Ol\u00e1 \u2014 "quoted"\nnext line \U0001f600'
    publisher.delta(chunk)
    [(_, _, data)] = entries(conversation_id)
    assert data["text_chunk"] == chunk
    raw = redis_client().xrange(stream_key(conversation_id))[0][1]["d"]
    assert "\u00e1" in raw  # not \\u-escaped: compact, readable


@pytest.mark.parametrize("batched", [False, True])
def test_writes_report_the_cancel_flag(ids, batched):
    conversation_id, run_id, message_id = ids
    publisher = RunPublisher(
        conversation_id, run_id, message_id, cancel_flag_key=cancel_key(run_id), batched=batched
    )
    publisher.delta("a")
    if batched:
        publisher.close()
    assert publisher.cancel_requested is False
    redis_client().set(cancel_key(run_id), "1")
    publisher = RunPublisher(
        conversation_id, run_id, message_id, cancel_flag_key=cancel_key(run_id), batched=batched
    )
    publisher.delta("b")
    publisher.close()
    assert publisher.cancel_requested is True
    assert [data["text_chunk"] for _, event, data in entries(conversation_id) if event == "delta"] == [
        "a",
        "b",
    ]


def test_one_round_trip_announces_every_stream_it_wrote_at_once_and_reads_each_runs_flag():
    """Runs batched into one round trip cost one PUBLISH naming all their streams (the hubs
    read just those), not one per run; each run learns its own cancel flag."""
    client = redis_client()
    runs = [(uuid.uuid4(), uuid.uuid4()) for _ in range(3)]
    keys = [stream_key(conversation_id) for conversation_id, _ in runs]
    client.set(cancel_key(runs[1][1]), "1")
    publishers = [
        RunPublisher(conversation_id, run_id, uuid.uuid4(), cancel_flag_key=cancel_key(run_id), batched=True)
        for conversation_id, run_id in runs
    ]
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(NOTIFY_CHANNEL)
    pubsub.get_message(timeout=1.0)  # the subscription's confirmation
    writer = stream_writer()
    with writer.cond:  # the writer takes the three runs' deltas in one batch
        for index, publisher in enumerate(publishers):
            publisher.delta(f"d{index}")
    for publisher in publishers:
        publisher.close()
    announced = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not announced:
        message = pubsub.get_message(timeout=0.5)
        if message is not None and set(announced_keys(message["data"])) & set(keys):
            announced.append(announced_keys(message["data"]))  # (other tests' writes share the channel)
    pubsub.close()
    assert announced == [keys]
    assert [p.cancel_requested for p in publishers] == [False, True, False]
    for conversation_id, _ in runs:
        assert [event for _, event, _ in entries(conversation_id)] == ["delta"]


def test_a_busy_writer_spaces_its_round_trips_and_an_idle_one_sends_at_once(ids, monkeypatch):
    """After a round trip the writer waits StreamWriter.MIN_INTERVAL before the next, and what
    is queued meanwhile rides along; after a quiet spell it sends the first write at once."""
    monkeypatch.setattr(StreamWriter, "MIN_INTERVAL", 4.0)
    conversation_id, run_id, message_id = ids
    publisher = RunPublisher(conversation_id, run_id, message_id, batched=True)
    sent_at = time.monotonic()
    publisher.delta("first")
    while not entries(conversation_id):
        assert time.monotonic() - sent_at < 2.5, "an idle writer held the first write back"
        time.sleep(0.01)
    publisher.delta("second")
    publisher.delta("third")
    time.sleep(0.5)  # (at most 3 s after the first round trip began: the next is due at 4 s)
    assert len(entries(conversation_id)) == 1
    publisher.close()  # waits for it
    assert time.monotonic() - sent_at >= 3.9
    assert [data["text_chunk"] for _, _, data in entries(conversation_id)] == ["first", "second", "third"]


def test_batched_deltas_arrive_in_order_before_message_end(ids):
    conversation_id, run_id, message_id = ids
    publisher = RunPublisher(conversation_id, run_id, message_id, batched=True)
    publisher.message_start()
    chunks = [f"t{i} " for i in range(3000)]
    for chunk in chunks:
        publisher.delta(chunk)
    publisher.message_end("".join(chunks), "completed", False, None)
    stored = entries(conversation_id)
    assert [event for _, event, _ in stored] == ["message_start"] + ["delta"] * 3000 + ["message_end"]
    assert "".join(data["text_chunk"] for _, event, data in stored if event == "delta") == "".join(chunks)
    assert publisher.count == 3002


def test_entry_ids_increase(ids):
    publisher = RunPublisher(*ids)
    returned = [publisher.delta(str(i)) for i in range(50)]
    parsed = [parse_id(i) for i in returned]
    assert parsed == sorted(parsed) and len(set(parsed)) == 50


def test_stream_is_trimmed_approximately(app, monkeypatch, ids):
    monkeypatch.setitem(app.config, "STREAM_MAXLEN", 50)
    conversation_id = ids[0]
    publisher = RunPublisher(*ids)
    publisher.message_start()
    for i in range(2000):
        publisher.delta(str(i))
    length = redis_client().xlen(stream_key(conversation_id))
    # Approximate trimming removes whole radix-tree nodes (100 entries by default).
    assert 50 <= length <= 250
    last = entries(conversation_id)[-1]
    assert last[2]["text_chunk"] == "1999"  # the newest entries are the ones kept


def test_ttl_is_set_at_start_and_refreshed_at_the_end(app, ids):
    conversation_id = ids[0]
    key = stream_key(conversation_id)
    r = redis_client()
    publisher = RunPublisher(*ids)
    publisher.message_start()
    ttl_after_start = r.ttl(key)
    assert ttl_after_start >= 3600
    r.expire(key, 100)  # as if the run had been streaming for a long time
    publisher.delta("x")
    assert r.ttl(key) <= 100  # deltas do not pay for an EXPIRE each
    publisher.message_end("x", "completed", False, None)
    ttl = r.ttl(key)
    assert ttl >= 3600  # a finished run stays resumable for at least an hour
    assert ttl <= app.config["STREAM_TTL_SECONDS"]


def test_ttl_follows_config(app, monkeypatch, ids):
    monkeypatch.setitem(app.config, "STREAM_TTL_SECONDS", 5000)
    publisher = RunPublisher(*ids)
    publisher.message_end("", "cancelled", False, None)
    assert 4990 <= redis_client().ttl(stream_key(ids[0])) <= 5000


# --- cursor helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry_id", "before"),
    [
        ("1700000000000-5", "1700000000000-4"),
        ("1700000000000-1", "1700000000000-0"),
        ("1700000000000-0", "1699999999999-18446744073709551615"),
        ("1700000000000", "1699999999999-18446744073709551615"),
        ("0-1", "0-0"),
        ("0-0", ZERO_ID),
    ],
)
def test_id_before(entry_id, before):
    assert id_before(entry_id) == before


def test_id_before_is_an_exclusive_cursor_that_yields_the_entry(ids):
    publisher = RunPublisher(*ids)
    written = [publisher.delta(str(i)) for i in range(5)]
    key = stream_key(ids[0])
    for i, entry_id in enumerate(written):
        result = redis_client().xread({key: id_before(entry_id)})
        assert [e for e, _ in result[0][1]] == written[i:]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("0-0", True),
        ("1700000000000-0", True),
        ("1700000000000", True),
        ("18446744073709551615-18446744073709551615", True),
        ("18446744073709551616-0", False),
        ("1-18446744073709551616", False),
        ("", False),
        (None, False),
        ("abc", False),
        ("1-2-3", False),
        ("-1", False),
        ("1-", False),
        (" 1-0", False),
        ("1-0\n", False),
        ("\u0661-0", False),  # an Arabic-Indic digit: int() takes it, Redis does not
        ("1" * 5000, False),
        ("$", False),
        ("+", False),
    ],
)
def test_is_valid_id(value, valid):
    assert is_valid_id(value) is valid


def test_valid_ids_are_accepted_by_redis(ids):
    key = stream_key(ids[0])
    for value in ("0-0", "1700000000000", "18446744073709551615-18446744073709551615"):
        assert is_valid_id(value)
        redis_client().xread({key: value})  # raises if Redis rejects it


def test_last_entry_id(ids):
    conversation_id = ids[0]
    assert last_entry_id(conversation_id) == ZERO_ID
    publisher = RunPublisher(*ids)
    publisher.delta("a")
    newest = publisher.delta("b")
    assert last_entry_id(conversation_id) == newest


def test_cursor_is_lost(app, monkeypatch, ids):
    conversation_id = ids[0]
    # No stream at all: only the "from the beginning" cursor is not lost.
    assert cursor_is_lost(conversation_id, "1700000000000-0") is True
    assert cursor_is_lost(conversation_id, ZERO_ID) is False

    publisher = RunPublisher(*ids)
    written = [publisher.delta(str(i)) for i in range(20)]
    # Nothing trimmed yet: no cursor is lost, however old.
    for cursor in (ZERO_ID, "1-0", written[0], id_before(written[0]), written[-1]):
        assert cursor_is_lost(conversation_id, cursor) is False

    monkeypatch.setitem(app.config, "STREAM_MAXLEN", 10)
    trimmer = RunPublisher(*ids)
    written += [trimmer.delta(str(i)) for i in range(500)]
    first_kept = redis_client().xrange(stream_key(conversation_id), count=1)[0][0]
    assert first_kept != written[0]
    assert cursor_is_lost(conversation_id, written[0]) is True
    assert cursor_is_lost(conversation_id, "1-0") is True
    assert cursor_is_lost(conversation_id, first_kept) is False
    assert cursor_is_lost(conversation_id, written[-1]) is False
    assert cursor_is_lost(conversation_id, ZERO_ID) is False  # "everything kept" is always fine

    redis_client().delete(stream_key(conversation_id))  # expired
    assert cursor_is_lost(conversation_id, written[-1]) is True


def _run_events(conversation_id, run_id, deltas: int, start: bool = True) -> str | None:
    publisher = RunPublisher(conversation_id, run_id, uuid.uuid4())
    start_id = publisher.message_start() if start else None
    for index in range(deltas):
        publisher.delta(f"t{index} ")
    return start_id


def test_run_start_cursor_finds_the_runs_message_start_pages_back(ids):
    conversation_id, run_id, _ = ids
    earlier = uuid.uuid4()
    _run_events(conversation_id, earlier, 3)
    start_id = _run_events(conversation_id, run_id, 1200)  # more than two pages of 500
    publish_event(conversation_id, "agent_mode", {"mode": "paused", "by": "agent"})  # no run_id
    assert run_start_cursor(conversation_id, run_id) == id_before(start_id)


def test_run_start_cursor_of_a_run_that_has_written_nothing_is_the_newest_entry(ids):
    conversation_id, run_id, _ = ids
    assert run_start_cursor(conversation_id, run_id) == ZERO_ID  # an empty stream
    _run_events(conversation_id, uuid.uuid4(), 3)  # an earlier run's
    newest = publish_event(conversation_id, "agent_mode", {"mode": "auto", "by": "owner"})
    assert run_start_cursor(conversation_id, run_id) == newest


def test_run_start_cursor_with_the_message_start_trimmed_away_reads_all_that_is_kept(ids):
    conversation_id, run_id, _ = ids
    _run_events(conversation_id, run_id, 5, start=False)
    assert run_start_cursor(conversation_id, run_id) == ZERO_ID


def test_run_text_so_far(ids):
    conversation_id, run_id, message_id = ids
    other_run = uuid.uuid4()
    earlier = RunPublisher(conversation_id, other_run, uuid.uuid4())
    earlier.message_start()
    earlier.delta("not ")
    publisher = RunPublisher(conversation_id, run_id, message_id)
    first = publisher.message_start()
    publisher.delta("Hel")
    earlier.delta("mine")
    publisher.tool_call("c", "list_services", {})
    publisher.delta("lo \u00e9")
    assert run_text_so_far(conversation_id, run_id, first) == "Hel" + "lo \u00e9"
    assert run_text_so_far(conversation_id, run_id, None) == "Hello \u00e9"
    assert run_text_so_far(conversation_id, other_run, None) == "not mine"
    assert run_text_so_far(uuid.uuid4(), run_id, None) == ""


def test_stream_and_cancel_keys():
    conversation_id, run_id = uuid.uuid4(), uuid.uuid4()
    assert stream_key(conversation_id) == stream_key(str(conversation_id))
    assert str(conversation_id) in stream_key(conversation_id)
    assert cancel_key(run_id) != stream_key(run_id) and str(run_id) in cancel_key(run_id)
