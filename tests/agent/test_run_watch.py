"""The worker's RunWatcher against the real Redis and PostgreSQL: one poll for all of the
process's runs finds the cancelled one within RUN_CANCEL_POLL_SECONDS, and one UPDATE
keeps every watched run's heartbeat."""

import threading
import time
from datetime import timedelta

from backend.agent.run_watch import RunWatcher, run_watcher
from backend.extensions import db, redis_client
from backend.models.types import utcnow
from backend.services import runs
from backend.streams import cancel_key
from tests.factories import make_conversation, make_message, make_workspace, reload_run


def running_runs(n: int):
    workspace = make_workspace()
    claimed = []
    for _ in range(n):
        conversation = make_conversation(workspace, channel="web_public")
        run = runs.create_run(conversation, make_message(conversation, "user", "Hi"))
        db.session.commit()
        claimed.append(runs.claim_run(run.id).run_id)
    return claimed


def watcher_with(app, cancel_seconds: float, heartbeat_seconds: float) -> RunWatcher:
    """A watcher of its own with these intervals (the app's settings are left as they were)."""
    saved = {key: app.config[key] for key in ("RUN_CANCEL_POLL_SECONDS", "RUN_HEARTBEAT_SECONDS")}
    app.config.update(RUN_CANCEL_POLL_SECONDS=cancel_seconds, RUN_HEARTBEAT_SECONDS=heartbeat_seconds)
    try:
        return RunWatcher(app)
    finally:
        app.config.update(saved)


def test_one_watcher_cancels_the_flagged_run_only_and_keeps_every_heartbeat(app):
    watcher = watcher_with(app, cancel_seconds=0.05, heartbeat_seconds=0.1)
    first, second, third = running_runs(3)
    old = utcnow() - timedelta(minutes=10)
    for run_id in (first, second, third):
        reload_run(run_id).heartbeat_at = old
    db.session.commit()
    cancelled = {run_id: threading.Event() for run_id in (first, second, third)}

    with watcher.watching(first, cancelled[first].set), watcher.watching(second, cancelled[second].set):
        with watcher.watching(third, cancelled[third].set):
            time.sleep(0.3)
            assert not any(event.is_set() for event in cancelled.values())
            redis_client().set(cancel_key(second), "1")
            flagged = time.monotonic()
            assert cancelled[second].wait(2)
            assert time.monotonic() - flagged < 0.5
        time.sleep(0.3)
    assert not cancelled[first].is_set() and not cancelled[third].is_set()
    assert all(
        reload_run(run_id).heartbeat_at > old + timedelta(minutes=9) for run_id in (first, second, third)
    )
    assert watcher._runs == {}


def test_the_app_has_one_watcher(app):
    assert run_watcher() is run_watcher() is app.extensions["run_watcher"]


def test_heartbeats_keep_time_when_each_poll_is_slow(app, monkeypatch):
    """A busy worker: every cancel poll takes 0.3 s against its 0.05 s interval. Beats are
    due every 0.2 s, so each poll is followed by one (a count of polls would beat every
    fourth poll, every 1.4 s, and a recovery sweep would take the runs for dead)."""
    watcher = watcher_with(app, cancel_seconds=0.05, heartbeat_seconds=0.2)
    (run_id,) = running_runs(1)
    monkeypatch.setattr(watcher, "_check_cancels", lambda _watched: time.sleep(0.3))
    beats = []
    touch = runs.touch_heartbeats
    monkeypatch.setattr(
        runs, "touch_heartbeats", lambda engine, ids: (beats.append(time.monotonic()), touch(engine, ids))
    )
    with watcher.watching(run_id, lambda: None):
        time.sleep(1.6)
    assert len(beats) >= 3, beats
