"""Recovering runs whose worker died, run by every worker process (no beat needed).

A running run proves it is alive by touching its heartbeat every few seconds.
When a heartbeat is older than RUN_STALE_SECONDS the run is failed visibly:
whatever it had streamed is saved, and `error` + `message_end` go out, so no
visitor waits forever and no run stays `running`. Queued runs whose task was
lost are sent again. A Redis lock keeps workers from doing the sweep twice.
"""

import logging
import threading

from flask import Flask

from backend.extensions import db, redis_client
from backend.services import dispatch, runs
from backend.streams import run_text_so_far

log = logging.getLogger(__name__)
LOCK_KEY = "runs:recovery-lock"
WORKER_LOST = {"code": "worker_lost", "message": "The worker writing this reply stopped; please ask again"}

_stop = threading.Event()


def fail_lost_run(run) -> None:
    text = run_text_so_far(run.conversation_id, run.id, run.first_event_id)
    outcome = runs.Outcome("failed", text, {"recovered": True, "degraded": False}, dict(WORKER_LOST))
    if dispatch.finish(run.id, run.conversation_id, outcome, announce_error=True):
        log.warning("run %s failed: its worker stopped (heartbeat stale)", run.id)


def recover_once() -> None:
    """One sweep: fail runs with a stale heartbeat, resend stranded queued runs."""
    for run in runs.stale_running_runs():
        fail_lost_run(run)
    for run_id in runs.stranded_queued_runs():
        log.warning("run %s was queued with no task in flight; enqueueing it again", run_id)
        dispatch.dispatch_run(run_id)


def _loop(app: Flask) -> None:
    interval = app.config["RUN_RECOVERY_INTERVAL_SECONDS"]
    while not _stop.wait(interval):
        with app.app_context():
            try:
                if redis_client().set(LOCK_KEY, "1", nx=True, ex=max(1, int(interval * 0.8))):
                    recover_once()
            except Exception:
                log.exception("run recovery sweep failed")
            finally:
                db.session.remove()


def start_recovery_loop(app: Flask) -> None:
    _stop.clear()
    threading.Thread(target=_loop, args=(app,), daemon=True, name="run-recovery").start()


def stop_recovery_loop() -> None:
    _stop.set()
