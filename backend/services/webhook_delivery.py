"""Delivering webhook events: fan-out, one attempt at a time, retries, the sweep.

An outbox event is fanned out into one delivery per active subscription that wants its
type. A delivery is attempted by the `deliver_webhook` task (queue `webhooks`): the
attempt first claims the row (status pending, due now) by moving `next_attempt_at` a
lease ahead and committing, so two copies of the task never send at once, and a worker
killed mid-attempt leaves a row the sweep sends again once the lease ends, with the same
event id. A 2xx delivers it; anything else is retried after the next delay of
WEBHOOK_RETRY_SCHEDULE (jittered), then the delivery fails. A subscription that fails
WEBHOOK_DISABLE_AFTER_FAILURES times in a row is switched off and its owner emailed.

Events whose task was lost and deliveries overdue by a lease are sent again by the sweep
(backend/services/webhook_sweep.py); delays too long to park in the broker are left to it.
"""

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, render_template
from sqlalchemy import select, update

from backend import metrics
from backend.extensions import db
from backend.models import User, WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription, Workspace
from backend.models.types import utcnow
from backend.rules.webhooks import is_success, parse_schedule, retry_delay
from backend.services import email, webhook_sender
from backend.services.webhook_outbox import send_delivery

log = logging.getLogger(__name__)
# Retries further out than this wait in the database for the sweep, not in the broker
# (Celery on Redis redelivers ETA tasks held past the visibility timeout).
MAX_COUNTDOWN_SECONDS = 600
EARLY_SLACK = timedelta(seconds=1)


def event_body(event: WebhookEvent) -> bytes:
    """The JSON body of every attempt of this event (the same bytes each time)."""
    payload = {
        "id": str(event.id),
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "workspace_id": str(event.workspace_id),
        "data": event.data,
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def fan_out(event_ids: list[str]) -> list[uuid.UUID]:
    """Creates the deliveries of events not fanned out yet; returns their ids (committed)."""
    ids = [uuid.UUID(str(i)) for i in event_ids]
    events = db.session.execute(
        select(WebhookEvent)
        .where(WebhookEvent.id.in_(ids), WebhookEvent.fanned_out_at.is_(None))
        .with_for_update(skip_locked=True)
    ).scalars()
    now, created, wanted = utcnow(), [], {}
    for event in events:
        if event.workspace_id not in wanted:
            wanted[event.workspace_id] = db.session.execute(
                select(WebhookSubscription.id, WebhookSubscription.events).where(
                    WebhookSubscription.workspace_id == event.workspace_id,
                    WebhookSubscription.is_active.is_(True),
                )
            ).all()
        for subscription_id, types in wanted[event.workspace_id]:
            if event.type in (types or []):
                delivery = WebhookDelivery(
                    id=uuid.uuid4(),
                    event_id=event.id,
                    subscription_id=subscription_id,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
                db.session.add(delivery)
                created.append(delivery.id)
        event.fanned_out_at = now
    db.session.commit()
    return created


def fan_out_and_send(event_ids: list[str]) -> None:
    """The fan-out task: a lone delivery (one event, one endpoint: the common case) is
    attempted right here, saving a task round trip; more are sent as tasks of their own, so
    a slow endpoint delays no other."""
    created = fan_out(event_ids)
    if len(created) == 1:
        attempt(str(created[0]))
        return
    for delivery_id in created:
        send_delivery(delivery_id)


@dataclass(frozen=True)
class Claim:
    delivery_id: uuid.UUID
    attempt: int
    url: str
    secret: str
    event_id: str
    body: bytes


def claim(delivery_id: uuid.UUID) -> Claim | None:
    """Takes a pending, due delivery for one attempt (committed), or None."""
    now = utcnow()
    delivery = db.session.execute(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update(skip_locked=True)
    ).scalar_one_or_none()
    if (
        delivery is None
        or delivery.status != "pending"
        or (delivery.next_attempt_at is not None and delivery.next_attempt_at > now + EARLY_SLACK)
    ):
        db.session.rollback()
        return None
    subscription = db.session.get(WebhookSubscription, delivery.subscription_id)
    event = db.session.get(WebhookEvent, delivery.event_id)
    if subscription is None or event is None or not subscription.is_active:
        delivery.status, delivery.finished_at, delivery.next_attempt_at = "failed", now, None
        db.session.commit()
        metrics.record_webhook_delivery("failed")
        return None
    delivery.attempts += 1
    delivery.next_attempt_at = now + timedelta(seconds=current_app.config["WEBHOOK_LEASE_SECONDS"])
    found = Claim(
        delivery.id,
        delivery.attempts,
        subscription.url,
        subscription.secret,
        str(event.id),
        event_body(event),
    )
    db.session.commit()
    return found


def _count_outcome(subscription_id: uuid.UUID, success: bool) -> bool:
    """Updates the subscription's run of failures without holding its row in the common case
    (a success after a success changes nothing); returns whether this failure switched the
    subscription off."""
    table = WebhookSubscription
    if success:
        db.session.execute(
            update(table)
            .where(table.id == subscription_id, table.consecutive_failures != 0)
            .values(consecutive_failures=0)
        )
        return False
    failures = db.session.execute(
        update(table)
        .where(table.id == subscription_id)
        .values(consecutive_failures=table.consecutive_failures + 1)
        .returning(table.consecutive_failures)
    ).scalar_one_or_none()
    if failures is None or failures < current_app.config["WEBHOOK_DISABLE_AFTER_FAILURES"]:
        return False
    switched = db.session.execute(
        update(table)
        .where(table.id == subscription_id, table.is_active.is_(True))
        .values(
            is_active=False, disabled_at=utcnow(), disabled_reason=f"{failures} consecutive failed deliveries"
        )
        .returning(table.id)
    ).scalar_one_or_none()
    return switched is not None


def _email_owner_disabled(subscription_id: uuid.UUID) -> None:
    row = db.session.execute(
        select(User.email, User.full_name, WebhookSubscription.url, WebhookSubscription.disabled_reason)
        .join(Workspace, Workspace.owner_id == User.id)
        .join(WebhookSubscription, WebhookSubscription.workspace_id == Workspace.id)
        .where(WebhookSubscription.id == subscription_id)
    ).first()
    if row is None:
        return
    context = {
        "project_name": current_app.config["PROJECT_NAME"],
        "full_name": row.full_name,
        "url": row.url,
        "reason": row.disabled_reason,
    }
    html = render_template("email/webhook_disabled.html", **context)
    text = render_template("email/webhook_disabled.txt", **context)
    email.send_email(row.email, f"{context['project_name']} - Webhook switched off", html, text)


def record(found: Claim, result: webhook_sender.Result) -> float | None:
    """Saves the attempt and what follows from it; returns the delay before the next
    attempt (None when there is none)."""
    config = current_app.config
    now = utcnow()
    delivery = db.session.execute(
        select(WebhookDelivery).where(WebhookDelivery.id == found.delivery_id).with_for_update()
    ).scalar_one_or_none()
    if delivery is None:  # deleted with its subscription meanwhile
        db.session.rollback()
        return None
    delay = None
    success = is_success(result.status_code)
    if success:
        outcome = "delivered"
        delivery.status, delivery.finished_at, delivery.next_attempt_at = "delivered", now, None
    else:
        delay = retry_delay(parse_schedule(config["WEBHOOK_RETRY_SCHEDULE"]), found.attempt)
        outcome = "failed" if delay is None else "retrying"
        if delay is None:
            delivery.status, delivery.finished_at, delivery.next_attempt_at = "failed", now, None
        else:
            delivery.next_attempt_at = now + timedelta(seconds=delay)
    disabled = _count_outcome(delivery.subscription_id, success)
    db.session.add(
        WebhookAttempt(
            id=uuid.uuid4(),
            delivery_id=delivery.id,
            attempt=found.attempt,
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            created_at=now,
            next_retry_at=delivery.next_attempt_at if delay is not None else None,
        )
    )
    db.session.commit()
    metrics.record_webhook_delivery(outcome)
    if disabled:
        log.warning("webhook subscription %s switched off after repeated failures", delivery.subscription_id)
        _email_owner_disabled(delivery.subscription_id)
    return delay


def attempt(delivery_id: str) -> None:
    """The `deliver_webhook` task: one attempt, then the next one scheduled."""
    found = claim(uuid.UUID(delivery_id))
    if found is None:
        return
    config = current_app.config
    result = webhook_sender.post(
        found.url,
        found.secret,
        found.event_id,
        found.body,
        config["WEBHOOK_TIMEOUT_SECONDS"],
        config["WEBHOOK_ALLOW_PRIVATE"],
    )
    log.info(
        "webhook %s attempt %d: %s in %d ms",
        found.event_id,
        found.attempt,
        result.status_code or result.error,
        result.duration_ms,
    )
    delay = record(found, result)
    if delay is not None and delay <= MAX_COUNTDOWN_SECONDS:
        send_delivery(found.delivery_id, countdown=delay)
