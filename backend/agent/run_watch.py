"""The watch beside a streaming run: heartbeat and cancel polling, off the token loop."""

import logging
import threading
import time
import uuid

from flask import current_app

from backend.extensions import db
from backend.services import runs

log = logging.getLogger(__name__)


class RunWatch:
    """A side thread (a greenlet under gevent) beside a streaming run: it touches the
    run's heartbeat every `heartbeat_interval` and polls the cancel flag every
    `cancel_interval`, so a cancel stops the run even while the model is silent. (While
    text streams, the RunPublisher already reads the same flag with every batch it
    sends, which stops the run within a few tokens; this poll covers the silences.)"""

    def __init__(self, run_id: uuid.UUID, heartbeat_interval: float, cancel_interval: float, on_cancel):
        # The thread runs in the app's context. (Flask types current_app as the app it stands for,
        # not as the proxy that has _get_current_object.)
        self._app = current_app._get_current_object()  # type: ignore[attr-defined]
        self._engine = db.engine
        self._run_id = run_id
        self._heartbeat_interval, self._cancel_interval = heartbeat_interval, cancel_interval
        self._on_cancel = on_cancel
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name=f"run-watch-{run_id}")

    def _watch(self) -> None:
        with self._app.app_context():
            self._poll()

    def _poll(self) -> None:
        last_beat = time.monotonic()
        while not self._stop.wait(self._cancel_interval):
            try:
                if runs.cancel_requested(self._run_id):
                    self._on_cancel()
                    return
            except Exception:
                log.warning("cancel check failed for run %s", self._run_id, exc_info=True)
            if time.monotonic() - last_beat >= self._heartbeat_interval:
                last_beat = time.monotonic()
                try:
                    runs.touch_heartbeat(self._engine, self._run_id)
                except Exception:  # a missed beat is retried; a long outage makes the run stale
                    log.warning("heartbeat failed for run %s", self._run_id, exc_info=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
