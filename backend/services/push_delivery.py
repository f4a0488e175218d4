"""Sending a push notification to the owner's phones: one attempt at a time, retries, tokens
Expo no longer knows.

The `send_push` task (queue `push`, run by the Procfile's `webhooks` process) first claims the
notification (pending, due now) by moving `next_attempt_at` a lease ahead and committing, so
two copies of the task never send at once, and a worker killed mid-attempt leaves a row the
sweep sends again once the lease ends (at least once: the phone may show it twice). The
owner's tokens are read at send time, minus those already done with; they go to Expo in
requests of at most 100 messages. No answer, a 5xx or a 429 is retried after an exponential,
jittered delay (PUSH_RETRY_BACKOFF_SECONDS doubled, at most PUSH_RETRY_BACKOFF_MAX_SECONDS)
until PUSH_MAX_ATTEMPTS; a token Expo answers `DeviceNotRegistered` for is deleted.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select

from backend.extensions import db
from backend.models import PushNotification, PushToken
from backend.models.types import utcnow
from backend.rules.push import Verdict, chunks, judge, merge, messages, retry_delay
from backend.services import push_sender
from backend.services.push_outbox import send_push

log = logging.getLogger(__name__)
# Retries further out than this wait in the database for the sweep, not in the broker
# (Celery on Redis redelivers ETA tasks held past the visibility timeout).
MAX_COUNTDOWN_SECONDS = 600
EARLY_SLACK = timedelta(seconds=1)


@dataclass(frozen=True)
class Claim:
    notification_id: uuid.UUID
    attempt: int
    tokens: list[str]
    title: str
    body: str
    data: dict


def _finish(row: PushNotification, status: str, error: str | None) -> None:
    row.status, row.finished_at, row.next_attempt_at, row.last_error = status, utcnow(), None, error


def claim(notification_id: uuid.UUID) -> Claim | None:
    """Takes a pending, due notification for one attempt (committed), or None."""
    now = utcnow()
    query = select(PushNotification).where(PushNotification.id == notification_id)
    row = db.session.execute(query.with_for_update(skip_locked=True)).scalar_one_or_none()
    if (
        row is None
        or row.status != "pending"
        or (row.next_attempt_at is not None and row.next_attempt_at > now + EARLY_SLACK)
    ):
        db.session.rollback()
        return None
    done = set(row.done_tokens or [])
    tokens = [
        token
        for token in db.session.execute(
            select(PushToken.token).where(PushToken.user_id == row.user_id).order_by(PushToken.created_at)
        ).scalars()
        if token not in done
    ]
    if not tokens:
        _finish(row, "sent" if done else "failed", row.last_error if done else "the owner has no push token")
        db.session.commit()
        return None
    row.attempts += 1
    row.next_attempt_at = now + timedelta(seconds=current_app.config["PUSH_LEASE_SECONDS"])
    found = Claim(row.id, row.attempts, tokens, row.title, row.body, dict(row.data or {}))
    db.session.commit()
    return found


def send(found: Claim) -> Verdict:
    """Sends the claimed notification to its tokens, 100 per request; Expo's answers, merged."""
    config = current_app.config
    verdicts = []
    for batch in chunks(found.tokens):
        result = push_sender.post(
            config["EXPO_PUSH_URL"],
            messages(batch, found.title, found.body, found.data),
            config["EXPO_PUSH_TIMEOUT_SECONDS"],
            config["EXPO_ACCESS_TOKEN"],
        )
        verdicts.append(judge(result.status_code, result.body, batch, result.error))
        log.info(
            "push %s attempt %d: %d message(s), %s in %d ms",
            found.notification_id,
            found.attempt,
            len(batch),
            result.status_code or result.error,
            result.duration_ms,
        )
    return merge(verdicts)


def record(found: Claim, verdict: Verdict) -> float | None:
    """Saves what Expo answered; returns the delay before the next attempt (None when none)."""
    config = current_app.config
    if verdict.unregistered:
        db.session.execute(delete(PushToken).where(PushToken.token.in_(list(verdict.unregistered))))
        log.info(
            "push %s: forgot %d unregistered device(s)", found.notification_id, len(verdict.unregistered)
        )
    row = db.session.execute(
        select(PushNotification).where(PushNotification.id == found.notification_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:  # deleted with its conversation meanwhile
        db.session.commit()
        return None
    done = [*(row.done_tokens or []), *verdict.sent, *verdict.dropped, *verdict.unregistered]
    row.done_tokens = list(dict.fromkeys(done))
    row.last_error = verdict.error
    delay = None
    if verdict.retry:
        delay = retry_delay(
            found.attempt,
            config["PUSH_RETRY_BACKOFF_SECONDS"],
            config["PUSH_RETRY_BACKOFF_MAX_SECONDS"],
            config["PUSH_MAX_ATTEMPTS"],
        )
        if delay is None:
            _finish(row, "failed", verdict.error)
        else:
            row.next_attempt_at = utcnow() + timedelta(seconds=delay)
    else:
        taken = set(row.done_tokens) - set(verdict.dropped) - set(verdict.unregistered)
        _finish(row, "sent" if taken else "failed", verdict.error)
    db.session.commit()
    return delay


def attempt(notification_id: str) -> None:
    """The `send_push` task: one attempt, then the next one scheduled."""
    found = claim(uuid.UUID(notification_id))
    if found is None:
        return
    delay = record(found, send(found))
    if delay is not None and delay <= MAX_COUNTDOWN_SECONDS:
        send_push(found.notification_id, countdown=delay)
