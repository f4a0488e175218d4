"""Celery tasks: they take ids and call services/agent, nothing else.

`run_agent` is acknowledged late, so a task whose worker died is delivered
again; the run's own state (claimed under a row lock) makes that harmless.
Each worker also watches for runs whose worker died (no heartbeat): see
`backend.services.recovery`, started when the worker is ready.
"""

import logging
import uuid

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down

log = logging.getLogger(__name__)


@shared_task(name="backend.tasks.run_agent", acks_late=True, ignore_result=True)
def run_agent(run_id: str) -> None:
    """Runs the agent for one visitor message."""
    from backend.agent.runner import execute_run

    execute_run(uuid.UUID(run_id))


def enqueue_run(run_id: uuid.UUID) -> None:
    """Sends a run to the workers; a failure leaves it queued for the recovery loop to resend."""
    try:
        run_agent.delay(str(run_id))
    except Exception:
        log.exception("could not enqueue run %s; the recovery loop will resend it", run_id)


@worker_ready.connect
def _start_recovery(sender=None, **_kwargs) -> None:
    from backend.services.recovery import start_recovery_loop

    start_recovery_loop(sender.app.flask_app)


@worker_shutting_down.connect
def _stop_recovery(**_kwargs) -> None:
    from backend.services.recovery import stop_recovery_loop

    stop_recovery_loop()
