"""The periodic loop every worker runs (run recovery, webhook and push sweeps): one tick at
a time across processes through the Redis lock, and a failing tick does not end it."""

import threading
import time

from backend.extensions import redis_client
from backend.services.locked_loop import LockedLoop

LOCK = "test:locked-loop"


def wait_until(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def test_two_loops_on_one_lock_do_one_tick_while_it_holds(app, monkeypatch):
    monkeypatch.setitem(app.config, "TEST_LOOP_SECONDS", 0.05)
    redis_client().delete(LOCK)
    ticks: list[str] = []
    loops = [
        LockedLoop(name, LOCK, "TEST_LOOP_SECONDS", lambda name=name: ticks.append(name)) for name in "ab"
    ]
    for loop in loops:
        loop.start(app)
    try:
        assert wait_until(lambda: ticks)
        time.sleep(0.5)  # ten more ticks each, all inside the lock's one second
    finally:
        for loop in loops:
            loop.stop()
    assert len(ticks) == 1
    assert 0 < redis_client().pttl(LOCK) <= 1000  # the lock, held by the one tick, expires by itself


def test_a_failing_tick_is_logged_and_the_loop_goes_on(app, monkeypatch, caplog):
    monkeypatch.setitem(app.config, "TEST_LOOP_SECONDS", 0.05)
    calls = threading.Semaphore(0)

    def job():
        redis_client().delete(LOCK)  # the next tick may take the lock again
        calls.release()
        raise RuntimeError("sweep broke")

    redis_client().delete(LOCK)
    loop = LockedLoop("test-loop", LOCK, "TEST_LOOP_SECONDS", job)
    loop.start(app)
    try:
        assert calls.acquire(timeout=5) and calls.acquire(timeout=5)
    finally:
        loop.stop()
    assert "test-loop failed" in caplog.text and "sweep broke" in caplog.text


def test_a_tick_that_did_something_is_reported_with_its_count(app, monkeypatch, caplog):
    monkeypatch.setitem(app.config, "TEST_LOOP_SECONDS", 0.05)
    results = iter([0, 3])
    redis_client().delete(LOCK)

    def job():
        redis_client().delete(LOCK)
        return next(results, None)

    loop = LockedLoop("test-loop", LOCK, "TEST_LOOP_SECONDS", job, report="test sweep: sent %d again")
    loop.start(app)
    try:
        assert wait_until(lambda: "test sweep: sent" in caplog.text)
    finally:
        loop.stop()
    assert "test sweep: sent 3 again" in caplog.text and "sent 0" not in caplog.text
