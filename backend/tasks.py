"""Celery tasks: they take ids (or, for emails, a message rendered by the request) and call
services/agent, nothing else.

`run_agent` is acknowledged late, so a task whose worker died is delivered
again; the run's own state (claimed under a row lock) makes that harmless.
Each worker also watches for runs whose worker died (no heartbeat): see
`backend.services.recovery`, started when the worker is ready. Runs are sent
here by name from `backend.services.dispatch`, which never imports this module; emails
by name from `backend.services.email`.
"""

import logging
import smtplib
import uuid

from celery import Task, shared_task
from celery.signals import worker_ready, worker_shutting_down
from flask import current_app

from backend.agent.runner import execute_run
from backend.services import email as email_service
from backend.services import (
    push_delivery,
    push_outbox,
    push_sweep,
    webhook_delivery,
    webhook_outbox,
    webhook_sweep,
)
from backend.services.recovery import start_recovery_loop, stop_recovery_loop

log = logging.getLogger(__name__)


@shared_task(name="backend.tasks.run_agent", acks_late=True, ignore_result=True)
def run_agent(run_id: str) -> None:
    """Runs the agent for one visitor message."""
    execute_run(uuid.UUID(run_id))


@shared_task(name=email_service.EMAIL_TASK, bind=True, acks_late=True, ignore_result=True)
def send_email(self: Task, to: str, subject: str, html: str, text: str | None = None) -> None:
    """Sends one rendered message. A refused connection or a temporary SMTP answer is sent
    again after `email_service.retry_delay`, at most EMAIL_MAX_RETRIES times; a permanent
    refusal is logged and dropped."""
    try:
        email_service.deliver(to, subject, html, text)
    except (OSError, smtplib.SMTPException) as error:
        if not email_service.is_transient(error):
            log.error("the mail server refused %r to %s for good: %s", subject, to, error)
            return
        log.warning("sending %r to %s failed (attempt %d): %s", subject, to, self.request.retries + 1, error)
        raise self.retry(
            exc=error,
            countdown=email_service.retry_delay(self.request.retries),
            max_retries=current_app.config["EMAIL_MAX_RETRIES"],
        ) from error


@worker_ready.connect
def _start_recovery(sender=None, **_kwargs) -> None:
    start_recovery_loop(sender.app.flask_app)


@worker_shutting_down.connect
def _stop_recovery(**_kwargs) -> None:
    stop_recovery_loop()


@shared_task(name=webhook_outbox.FAN_OUT_TASK, acks_late=True, ignore_result=True)
def fan_out_webhook_events(event_ids: list[str]) -> None:
    """Turns committed outbox events into deliveries, one per subscribed endpoint."""
    webhook_delivery.fan_out_and_send(event_ids)


@shared_task(name=webhook_outbox.DELIVER_TASK, acks_late=True, ignore_result=True)
def deliver_webhook(delivery_id: str) -> None:
    """One attempt of one webhook delivery; the next one is scheduled from the outcome."""
    webhook_delivery.attempt(delivery_id)


@worker_ready.connect
def _start_webhook_sweep(sender=None, **_kwargs) -> None:
    """Only in workers that deliver webhooks: the agent runs' worker does no webhook work."""
    if webhook_outbox.QUEUE in (sender.app.amqp.queues.consume_from or {}):
        webhook_sweep.start_sweep_loop(sender.app.flask_app)


@worker_shutting_down.connect
def _stop_webhook_sweep(**_kwargs) -> None:
    webhook_sweep.stop_sweep_loop()


@shared_task(name=push_outbox.SEND_TASK, acks_late=True, ignore_result=True)
def send_push(notification_id: str) -> None:
    """One attempt of one push notification to the owner's phones; the next one is scheduled."""
    push_delivery.attempt(notification_id)


@worker_ready.connect
def _start_push_sweep(sender=None, **_kwargs) -> None:
    """Only in workers that send pushes (the Procfile's `webhooks` process)."""
    if push_outbox.QUEUE in (sender.app.amqp.queues.consume_from or {}):
        push_sweep.start_sweep_loop(sender.app.flask_app)


@worker_shutting_down.connect
def _stop_push_sweep(**_kwargs) -> None:
    push_sweep.stop_sweep_loop()
