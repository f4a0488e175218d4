"""Faults beyond a dead process (issue 14), each with real processes: Redis restarted empty,
Redis unreachable, PostgreSQL restarted, a stalled model, a client that stops reading, a
slow network to Redis. Every test runs its own web + worker on a private redis-server (and,
for PostgreSQL, a private cluster), never the machine's shared ones, on a database of its
own: the shared `stack`'s recovery loop must not see these runs. The README's "Failure
modes" table quotes the recovery times these tests print (`-s` shows them).

Marked `faults`: `python -m pytest -m faults` runs them alone; the default run includes them.
"""

import os
import time

import pytest
import requests
from sqlalchemy.engine import make_url

from tests.db_cleanup import admin_connection
from tests.e2e.chat import Visitor, after_deltas, is_end_of, names
from tests.e2e.faults import FaultStack, RedisServer, follow_in_thread, migrate_and_seed
from tests.fake_groq import Reply

pytestmark = pytest.mark.faults
STALE, RECOVERY_INTERVAL = 5.0, 1.0  # base_env's RUN_STALE_SECONDS / RUN_RECOVERY_INTERVAL_SECONDS


def report(what: str, seconds: float) -> None:
    print(f"\n[faults] {what}: {seconds:.2f} s")


@pytest.fixture(scope="module")
def faults_db() -> str:
    """A database of these tests' own on the shared server, migrated and seeded (handle 'demo')."""
    url = make_url(os.environ["TEST_DATABASE_URL"])
    url = url.set(database=f"{url.database}_faults")
    conn = admin_connection(url.render_as_string(hide_password=False))
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (url.database,)
        )
        cur.execute(f'DROP DATABASE IF EXISTS "{url.database}"')
        cur.execute(f'CREATE DATABASE "{url.database}"')
    conn.close()
    rendered = url.render_as_string(hide_password=False)
    migrate_and_seed(rendered)
    return rendered


@pytest.fixture
def groq(fake_groq):
    fake_groq.reset()
    yield fake_groq
    fake_groq.reset()


@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.crash()


@pytest.fixture
def stacks():
    started: list[FaultStack] = []
    yield started
    for stack in started:
        stack.stop()


def start_stack(stacks, *args, **kwargs) -> FaultStack:
    stack = FaultStack(*args, **kwargs)
    stacks.append(stack)
    return stack


def saved_reply(visitor, run_id: str) -> str:
    replies = [m for m in visitor.messages() if m["role"] == "assistant" and m.get("run_id") == run_id]
    assert len(replies) == 1, replies
    return replies[0]["content"]


def wait_running(visitor, run_id: str) -> None:
    visitor.wait_run(run_id, statuses=("running",), timeout=20)


# --- 4. The model stalls ------------------------------------------------------------------


def test_a_stalled_model_ends_the_run_within_the_groq_timeout_and_a_cancel_still_stops_it(
    faults_db, private_redis, groq, stacks
):
    timeout = 2.0
    stack = start_stack(
        stacks,
        groq.base_url,
        faults_db,
        private_redis.url(0),
        private_redis.url(1),
        GROQ_TIMEOUT_SECONDS=timeout,
    )
    groq.when("stall", Reply.stall_after(3, seconds=20))
    visitor = Visitor(stack, "demo")

    posted = visitor.send("stall please")
    run_id = posted["run"]["id"]
    stream = visitor.stream(posted["stream_cursor"], timeout=30)
    try:
        events = stream.events_until(after_deltas(3))
        stalled_at = time.monotonic()
        events += stream.events_until(is_end_of(run_id), timeout=20)
        ended_after = time.monotonic() - stalled_at
    finally:
        stream.close()
    assert names(events) == ["message_start"] + ["delta"] * 3 + ["error", "message_end"]
    assert events[-2].data["code"] == "llm_timeout"
    end = events[-1].data
    assert end["status"] == "failed" and end["full_text"] == "tok0 tok1 tok2"
    assert timeout - 0.5 < ended_after < timeout + 2.0, ended_after
    report("stalled model: the run ended after the stall began", ended_after)
    run = visitor.wait_run(run_id)
    assert run["status"] == "failed" and run["error"]["code"] == "llm_timeout"
    assert saved_reply(visitor, run_id) == "tok0 tok1 tok2"

    # A cancel during the stall stops the run within RUN_CANCEL_POLL_SECONDS (0.25 s).
    posted = visitor.send("stall again")
    run_id = posted["run"]["id"]
    stream = visitor.stream(posted["stream_cursor"], timeout=30)
    try:
        stream.events_until(after_deltas(3))
        cancelled_at = time.monotonic()
        assert visitor.cancel(run_id).status_code == 202
        events = stream.events_until(is_end_of(run_id), timeout=20)
        stopped_after = time.monotonic() - cancelled_at
    finally:
        stream.close()
    assert events[-1].data["status"] == "cancelled" and events[-1].data["full_text"] == "tok0 tok1 tok2"
    assert stopped_after < 1.5, stopped_after
    report("stalled model: a cancel stopped the run after", stopped_after)
    assert visitor.wait_run(run_id)["status"] == "cancelled"
    assert saved_reply(visitor, run_id) == "tok0 tok1 tok2"


# --- 1. Redis restarts and comes back empty --------------------------------------------------


def test_redis_restarting_empty_mid_stream_loses_no_reply_and_strands_no_run(
    faults_db, private_redis, groq, stacks
):
    stack = start_stack(stacks, groq.base_url, faults_db, private_redis.url(0), private_redis.url(1))
    groq.default = Reply.tokens(200, delay=0.02)
    visitors = [Visitor(stack, "demo", name=f"v{i}") for i in range(3)]
    posted = [visitor.send("tell me a long story") for visitor in visitors]
    queued = visitors[0].send("and then another one")  # waits behind the first; its task is in the broker
    followers = [
        follow_in_thread(visitor, sent["stream_cursor"], sent["run"]["id"], timeout=60)
        for visitor, sent in zip(visitors, posted, strict=True)
    ]
    for visitor, sent in zip(visitors, posted, strict=True):
        wait_running(visitor, sent["run"]["id"])
    time.sleep(0.5)  # the replies are streaming

    private_redis.crash()
    time.sleep(1.0)
    private_redis.start()  # empty: the streams, the broker's queues and the cancel flags are gone
    back = time.monotonic()

    seen = [follower() for follower in followers]
    for visitor, sent, got in zip(visitors, posted, seen, strict=True):
        run_id = sent["run"]["id"]
        assert got.error is None, (got.error, got.events[-5:])
        visitor.wait_run(run_id, timeout=30)
        reply = saved_reply(visitor, run_id)
        # Each visitor ends with its whole reply, or is told to reload (and the reload has it).
        assert got.resync or got.end["full_text"] == reply, got
    # The queued run's task vanished with the broker: the recovery loop sends it again.
    queued_run = visitors[0].wait_run(queued["run"]["id"], timeout=STALE + RECOVERY_INTERVAL + 30)
    finished_after = time.monotonic() - back
    report("redis restart: every run finished after Redis was back", finished_after)
    assert queued_run["status"] == "completed"
    assert saved_reply(visitors[0], queued["run"]["id"]) == " ".join(f"tok{i}" for i in range(200))
    assert finished_after < STALE + RECOVERY_INTERVAL + 12, finished_after  # + its own 4 s reply
    stack.wait_all_finished(timeout=5)
    run_ids = [sent["run"]["id"] for sent in posted] + [queued["run"]["id"]]
    replies = stack.replies_per_run()
    assert [replies.get(run_id) for run_id in run_ids] == [1, 1, 1, 1]

    # Everything reconnected by itself: the worker rode it out, a new message is answered live.
    assert stack.worker.proc.poll() is None and "Unrecoverable error" not in stack.worker.output()
    assert stack.health().status_code == 200
    groq.default = Reply.echo()
    asked = time.monotonic()
    fresh = visitors[1].send("are you back?")
    stream = visitors[1].stream(fresh["stream_cursor"], timeout=30)
    try:
        end = stream.events_until(is_end_of(fresh["run"]["id"]), timeout=30)[-1].data
    finally:
        stream.close()
    assert end["full_text"] == "You said: are you back?"
    report("redis restart: a new message after recovery was answered in", time.monotonic() - asked)
    assert "assistant_metrics_redis_up 1.0" in requests.get(f"{stack.url}/metrics", timeout=10).text
