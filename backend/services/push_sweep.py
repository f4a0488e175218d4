"""The push sweep: notifications a lost task or a dead worker left behind are sent again.

Every worker that consumes the `push` queue (the Procfile's `webhooks` process) runs it, one
at a time through a Redis lock, every PUSH_SWEEP_INTERVAL_SECONDS: pending notifications due a
whole lease (PUSH_LEASE_SECONDS) ago are sent again: their task was lost (a crash right after
the commit, a broker outage), their worker died mid-attempt (the attempt's lease ran out), or
their retry was too far out to park in the broker. Only what has waited a whole lease counts
as lost, so a backlog waiting in the broker is not sent twice.
"""

from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from backend.extensions import db
from backend.models import PushNotification
from backend.models.types import utcnow
from backend.services.locked_loop import LockedLoop
from backend.services.push_outbox import send_push

SWEEP_LOCK_KEY = "push:sweep-lock"
SWEEP_BATCH = 500


def sweep_once() -> int:
    """Sends the stranded notifications again; returns how many."""
    now = utcnow()
    cutoff = now - timedelta(seconds=current_app.config["PUSH_LEASE_SECONDS"])
    due = list(
        db.session.execute(
            select(PushNotification.id)
            .where(PushNotification.status == "pending", PushNotification.next_attempt_at < cutoff)
            .order_by(PushNotification.next_attempt_at)
            .limit(SWEEP_BATCH)
        ).scalars()
    )
    if due:
        # Due now: the task may claim it; and the next sweep waits another lease for it.
        db.session.execute(
            update(PushNotification)
            .where(PushNotification.id.in_(due), PushNotification.status == "pending")
            .values(next_attempt_at=now)
        )
    db.session.commit()
    for notification_id in due:
        send_push(notification_id)
    return len(due)


SWEEP_LOOP = LockedLoop(
    "push-sweep",
    SWEEP_LOCK_KEY,
    "PUSH_SWEEP_INTERVAL_SECONDS",
    sweep_once,
    report="push sweep: sent %d notification task(s) again",
)
start_sweep_loop, stop_sweep_loop = SWEEP_LOOP.start, SWEEP_LOOP.stop
