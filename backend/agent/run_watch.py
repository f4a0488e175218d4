"""The watch beside a worker's streaming runs: heartbeats and cancel polling, off the
token loops, for all of the process's runs at once."""

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import Flask

from backend.extensions import app_state, db, redis_client
from backend.services import runs
from backend.streams import cancel_key

log = logging.getLogger(__name__)


class RunWatcher:
    """One side thread per worker process (a greenlet under gevent) watches every run the
    process streams: every `cancel_interval` it reads all their cancel flags in ONE Redis
    round trip, so a cancel stops a run even while the model is silent, and every
    `heartbeat_interval` it proves they are alive with ONE UPDATE. (While text streams,
    the RunPublisher also reads its run's flag with every batch it sends, which stops the
    run within a few tokens; this poll covers the silences.) Idle while no run streams."""

    def __init__(self, app: Flask):
        self._app = app
        self._cancel_interval = app.config["RUN_CANCEL_POLL_SECONDS"]
        self._heartbeat_interval = app.config["RUN_HEARTBEAT_SECONDS"]
        self._lock = threading.Lock()
        self._runs: dict[uuid.UUID, Callable[[], None]] = {}
        self._has_runs = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watching(self, run_id: uuid.UUID, on_cancel: Callable[[], None]) -> Iterator[None]:
        """Within the block, `on_cancel` is called (once, from the watch thread) when the
        run's cancel flag is set, and the run's heartbeat is kept."""
        with self._lock:
            self._runs[run_id] = on_cancel
            self._has_runs.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, daemon=True, name="run-watcher")
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._runs.pop(run_id, None)

    def _watch(self) -> None:
        with self._app.app_context():
            # Beats go by the clock, not by a count of polls: on a busy worker a poll takes
            # longer than its interval, and counting polls would space the beats out until
            # the recovery sweep took live runs for dead ones.
            last_beat = time.monotonic()
            while True:
                self._has_runs.wait()
                time.sleep(self._cancel_interval)
                with self._lock:
                    watched = list(self._runs)
                    if not watched:
                        self._has_runs.clear()
                        continue
                self._check_cancels(watched)
                if time.monotonic() - last_beat >= self._heartbeat_interval:
                    last_beat = time.monotonic()
                    self._beat(watched)

    def _check_cancels(self, watched: list[uuid.UUID]) -> None:
        try:
            flags = redis_client().mget([cancel_key(run_id) for run_id in watched])
        except Exception:
            log.warning("cancel check failed for %d runs", len(watched), exc_info=True)
            return
        for run_id, flag in zip(watched, flags, strict=True):
            if flag is None:
                continue
            with self._lock:
                on_cancel = self._runs.pop(run_id, None)
            if on_cancel is not None:
                on_cancel()

    def _beat(self, watched: list[uuid.UUID]) -> None:
        try:
            runs.touch_heartbeats(db.engine, watched)
        except Exception:  # a missed beat is retried; a long outage makes the runs stale
            log.warning("heartbeat failed for %d runs", len(watched), exc_info=True)


def run_watcher() -> RunWatcher:
    """The current app's watcher (made on first use: only worker processes need one)."""
    return app_state("run_watcher", RunWatcher)
