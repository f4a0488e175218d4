"""The webhook sweep: what a lost task or a dead worker left behind is sent again.

Every `webhooks` worker runs it (one at a time, through a Redis lock) every
WEBHOOK_SWEEP_INTERVAL_SECONDS: outbox events never fanned out (their task was lost: a crash
right after the commit, a broker outage) are fanned out, and pending deliveries overdue by a
lease (WEBHOOK_LEASE_SECONDS: the worker of their attempt died, or their task was lost) are
sent again. Only what has waited a whole lease counts as lost, so a backlog waiting in the
broker is not sent twice.
"""

from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from backend.extensions import db
from backend.models import WebhookDelivery, WebhookEvent
from backend.models.types import utcnow
from backend.services.locked_loop import LockedLoop
from backend.services.webhook_delivery import fan_out
from backend.services.webhook_outbox import send_delivery

SWEEP_LOCK_KEY = "webhooks:sweep-lock"
SWEEP_BATCH = 500


def sweep_once() -> int:
    """Fans out stranded events and resends due deliveries; returns how many it sent.

    Only what has waited a whole lease past its time counts as lost: a backlog waiting in
    the broker is not sent twice, and a resent delivery waits another lease before the
    next sweep may send it again."""
    now = utcnow()
    cutoff = now - timedelta(seconds=current_app.config["WEBHOOK_LEASE_SECONDS"])
    stranded = db.session.execute(
        select(WebhookEvent.id)
        .where(WebhookEvent.fanned_out_at.is_(None), WebhookEvent.created_at < cutoff)
        .order_by(WebhookEvent.created_at)
        .limit(SWEEP_BATCH)
    ).scalars()
    created = fan_out([str(i) for i in stranded])
    due = list(
        db.session.execute(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at < cutoff)
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(SWEEP_BATCH)
        ).scalars()
    )
    if due:
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(due), WebhookDelivery.status == "pending")
            .values(next_attempt_at=now)
        )
    db.session.commit()
    for delivery_id in dict.fromkeys([*created, *due]):
        send_delivery(delivery_id)
    return len(created) + len(due)


SWEEP_LOOP = LockedLoop(
    "webhook-sweep",
    SWEEP_LOCK_KEY,
    "WEBHOOK_SWEEP_INTERVAL_SECONDS",
    sweep_once,
    report="webhook sweep: sent %d delivery task(s) again",
)
start_sweep_loop, stop_sweep_loop = SWEEP_LOOP.start, SWEEP_LOOP.stop
