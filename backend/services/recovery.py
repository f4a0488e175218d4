"""Recovering runs whose worker died, run by every worker process (no beat needed).

A running run proves it is alive by touching its heartbeat every few seconds.
When a heartbeat is older than RUN_STALE_SECONDS the run is failed visibly:
whatever it had streamed is saved, and `error` + `message_end` go out, so no
visitor waits forever and no run stays `running`. Queued runs whose task was
lost are sent again. A Redis lock keeps workers from doing the sweep twice.
"""

import logging

from backend.services import dispatch, runs
from backend.services.locked_loop import LockedLoop
from backend.streams import run_text_so_far

log = logging.getLogger(__name__)
LOCK_KEY = "runs:recovery-lock"
WORKER_LOST = {"code": "worker_lost", "message": "The worker writing this reply stopped; please ask again"}


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


RECOVERY_LOOP = LockedLoop("run-recovery", LOCK_KEY, "RUN_RECOVERY_INTERVAL_SECONDS", recover_once)
start_recovery_loop, stop_recovery_loop = RECOVERY_LOOP.start, RECOVERY_LOOP.stop
