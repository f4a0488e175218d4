"""Where runs are sent to the workers and where a finished run's stream is closed.

Every caller (the visitor's POST, a cancel, the run loop handing over to the next
run, the recovery sweep) goes through these functions, so a run is dispatched only
after the transaction that made it runnable has committed, and `message_end` is
written in one place. The task is sent by name, so nothing here imports the tasks.
"""

import logging
import uuid

from flask import current_app
from sqlalchemy.exc import DBAPIError

from backend.errors import is_database_outage, rollback_session
from backend.outages import retry_during_outage
from backend.services import runs
from backend.streams import RunPublisher

log = logging.getLogger(__name__)
RUN_TASK = "backend.tasks.run_agent"


def dispatch_run(run_id: uuid.UUID | None) -> None:
    """Sends a committed run to the workers; a failure leaves it queued for the recovery
    loop to resend. `None` (no next run) does nothing."""
    if run_id is None:
        return
    try:
        current_app.extensions["celery"].send_task(RUN_TASK, args=[str(run_id)])
    except Exception:
        log.exception("could not enqueue run %s; the recovery loop will resend it", run_id)


def close_stream(publisher: RunPublisher, outcome: runs.Outcome, announce_error: bool = False) -> None:
    """Writes the run's last events: `error` first when asked, then `message_end`."""
    if announce_error and outcome.error:
        publisher.error(outcome.error["code"], outcome.error["message"])
    publisher.message_end(outcome.text, outcome.status, outcome.degraded, outcome.meta.get("usage"))


def finish(
    run_id: uuid.UUID,
    conversation_id: uuid.UUID,
    outcome: runs.Outcome,
    publisher: RunPublisher | None = None,
    announce_error: bool = False,
) -> bool:
    """Finishes the run once (reply saved, state final), closes its stream and dispatches
    the conversation's next queued run. Returns whether this call finished it."""
    finished, next_run = save_outcome(run_id, outcome)
    if finished:
        if publisher is None:
            publisher = RunPublisher(conversation_id, run_id, runs.reply_message_id(run_id))
        close_stream(publisher, outcome, announce_error)
    dispatch_run(next_run)
    return finished


def save_outcome(run_id: uuid.UUID, outcome: runs.Outcome) -> tuple[bool, uuid.UUID | None]:
    """`runs.finish_run`, tried again while the database is unreachable (it saves once, under
    the conversation's lock, so a try that reached the database is never repeated)."""
    return retry_during_outage(
        lambda: runs.finish_run(run_id, outcome),
        DBAPIError,
        current_app.config["RUN_SAVE_RETRY_SECONDS"],
        f"saving run {run_id}",
        is_outage=is_database_outage,
        after_failure=rollback_session,
    )
