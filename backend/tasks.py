"""Celery tasks: they take ids and call services/agent, nothing else.

`run_agent` is acknowledged late, so a task whose worker died is delivered
again; the run's own state (claimed under a row lock) makes that harmless.
Each worker also watches for runs whose worker died (no heartbeat): see
`backend.services.recovery`, started when the worker is ready. Runs are sent
here by name from `backend.services.dispatch`, which never imports this module.
"""

import uuid

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down

from backend.agent.runner import execute_run
from backend.services.recovery import start_recovery_loop, stop_recovery_loop


@shared_task(name="backend.tasks.run_agent", acks_late=True, ignore_result=True)
def run_agent(run_id: str) -> None:
    """Runs the agent for one visitor message."""
    execute_run(uuid.UUID(run_id))


@worker_ready.connect
def _start_recovery(sender=None, **_kwargs) -> None:
    start_recovery_loop(sender.app.flask_app)


@worker_shutting_down.connect
def _stop_recovery(**_kwargs) -> None:
    stop_recovery_loop()
