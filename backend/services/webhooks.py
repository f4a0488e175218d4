"""A workspace's webhook subscriptions, their delivery log and redelivery.

The secret is generated here and returned once (on create and on rotate); the owner's
reads never include it. Every change forgets this process's cached subscription types
of the workspace (backend/services/webhook_outbox.py), so events follow it at once here
and within WEBHOOK_SUBSCRIPTION_CACHE_SECONDS in other processes.
"""

import uuid

from sqlalchemy import func, or_, select

from backend.errors import ValidationFailed, not_found
from backend.extensions import db
from backend.models import User, WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription, Workspace
from backend.models.types import utcnow
from backend.rules.webhooks import MAX_SUBSCRIPTIONS_PER_WORKSPACE, new_secret
from backend.services.pagination import page
from backend.services.webhook_outbox import forget_workspace, send_delivery
from backend.services.workspaces import check_owner, get_owned, parse_id


def _events(events: list[str]) -> list[str]:
    return list(dict.fromkeys(events))


def list_subscriptions(workspace: Workspace, skip: int, limit: int) -> tuple[list[WebhookSubscription], int]:
    conditions = [WebhookSubscription.workspace_id == workspace.id]
    return page(
        WebhookSubscription, conditions, [WebhookSubscription.created_at, WebhookSubscription.id], skip, limit
    )


def create_subscription(workspace: Workspace, data: dict) -> WebhookSubscription:
    """A new subscription with a fresh secret; at most MAX_SUBSCRIPTIONS_PER_WORKSPACE."""
    url = data["url"]
    # The workspace row is locked so two concurrent creations cannot both pass the limit.
    db.session.execute(select(Workspace.id).where(Workspace.id == workspace.id).with_for_update())
    count = db.session.execute(
        select(func.count())
        .select_from(WebhookSubscription)
        .where(WebhookSubscription.workspace_id == workspace.id)
    ).scalar_one()
    if count >= MAX_SUBSCRIPTIONS_PER_WORKSPACE:
        db.session.rollback()
        limit = f"A workspace can have at most {MAX_SUBSCRIPTIONS_PER_WORKSPACE} webhooks"
        raise ValidationFailed({"_schema": [limit]}, detail=limit)
    subscription = WebhookSubscription(
        id=uuid.uuid4(),
        workspace_id=workspace.id,
        url=url,
        events=_events(data["events"]),
        is_active=data.get("is_active", True),
        secret=new_secret(),
        consecutive_failures=0,
    )
    db.session.add(subscription)
    db.session.commit()
    forget_workspace(workspace.id)
    return subscription


def get_accessible_subscription(user: User, subscription_id: uuid.UUID | str) -> WebhookSubscription:
    return get_owned(user, WebhookSubscription, subscription_id, "Webhook")


def update_subscription(subscription: WebhookSubscription, data: dict) -> WebhookSubscription:
    if "url" in data:
        subscription.url = data["url"]
    if "events" in data:
        subscription.events = _events(data["events"])
    if "is_active" in data:
        if data["is_active"] and not subscription.is_active:
            # Switched on again by its owner: the failure count starts over.
            subscription.consecutive_failures = 0
            subscription.disabled_at = subscription.disabled_reason = None
        subscription.is_active = data["is_active"]
    db.session.commit()
    forget_workspace(subscription.workspace_id)
    return subscription


def delete_subscription(subscription: WebhookSubscription) -> None:
    workspace_id = subscription.workspace_id
    db.session.delete(subscription)
    db.session.commit()
    forget_workspace(workspace_id)


def rotate_secret(subscription: WebhookSubscription) -> WebhookSubscription:
    """A new secret; deliveries from now on are signed with it only."""
    subscription.secret = new_secret()
    db.session.commit()
    return subscription


def list_attempts(subscription: WebhookSubscription, skip: int, limit: int) -> tuple[list[dict], int]:
    """The subscription's delivery attempts, newest first."""
    where = WebhookDelivery.subscription_id == subscription.id
    joined = select(WebhookAttempt).join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
    count = db.session.execute(select(func.count()).select_from(joined.where(where).subquery())).scalar_one()
    rows = db.session.execute(
        select(WebhookAttempt, WebhookDelivery, WebhookEvent.type)
        .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(where)
        .order_by(WebhookAttempt.created_at.desc(), WebhookAttempt.attempt.desc())
        .offset(skip)
        .limit(limit)
    ).all()
    items = [
        {
            "id": attempt.id,
            "delivery_id": delivery.id,
            "event_id": delivery.event_id,
            "event_type": event_type,
            "attempt": attempt.attempt,
            "status_code": attempt.status_code,
            "error": attempt.error,
            "duration_ms": attempt.duration_ms,
            "created_at": attempt.created_at,
            "next_retry_at": attempt.next_retry_at,
            "delivery_status": delivery.status,
        }
        for attempt, delivery, event_type in rows
    ]
    return items, count


def redeliver(user: User, delivery_id: uuid.UUID | str) -> WebhookDelivery:
    """Sends a delivery once more, now (by its id or the id of one of its attempts): a
    pending one is brought forward; a finished one is pending again, and a failure goes on
    with the retry schedule from its attempt count (past its end: one attempt only)."""
    wanted = parse_id(delivery_id, "Delivery")
    row = db.session.execute(
        select(WebhookDelivery, Workspace.owner_id)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .join(Workspace, Workspace.id == WebhookSubscription.workspace_id)
        .outerjoin(WebhookAttempt, WebhookAttempt.delivery_id == WebhookDelivery.id)
        .where(or_(WebhookDelivery.id == wanted, WebhookAttempt.id == wanted))
        .limit(1)
    ).first()
    if row is None:
        raise not_found("Delivery")
    delivery, owner_id = row
    check_owner(user, owner_id)
    if delivery.status != "pending":
        # One more attempt past the schedule: a failure ends it again.
        delivery.status, delivery.finished_at = "pending", None
    delivery.next_attempt_at = utcnow()
    db.session.commit()
    send_delivery(delivery.id)
    return delivery
