"""Test data factories: they write through the models and return them (and two
readers that see what the database holds now)."""

import itertools
import uuid

from sqlalchemy import select

from backend.auth import issue_access_token
from backend.extensions import db
from backend.models import (
    AgentRun,
    Conversation,
    ConversationMessage,
    SchedulingConnector,
    User,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
    Workspace,
    WorkspaceService,
)
from backend.models.types import utcnow
from backend.rules.webhooks import EVENT_TYPES, new_secret
from backend.security import hash_password
from backend.services.messages import append_message

_seq = itertools.count(1)
DEFAULT_PASSWORD = "correct-horse-battery"


def make_user(email: str | None = None, password: str = DEFAULT_PASSWORD, **fields) -> User:
    user = User(
        email=email or f"user{next(_seq)}@example.com",
        hashed_password=hash_password(password),
        is_active=fields.pop("is_active", True),
        is_superuser=fields.pop("is_superuser", False),
        social_links=fields.pop("social_links", {}),
        **fields,
    )
    db.session.add(user)
    db.session.commit()
    return user


def auth_headers(user: User) -> dict:
    return {"Authorization": f"Bearer {issue_access_token(user)}"}


def make_workspace(owner: User | None = None, **fields) -> Workspace:
    """A workspace for `owner` (a new user when omitted), with a unique handle."""
    owner = owner or make_user()
    workspace = Workspace(
        owner_id=owner.id,
        handle=fields.pop("handle", f"ws-{next(_seq)}-{uuid.uuid4().hex[:6]}"),
        name=fields.pop("name", "Test Workspace"),
        type=fields.pop("type", "individual"),
        tone=fields.pop("tone", "professional"),
        timezone=fields.pop("timezone", "UTC"),
        is_active=fields.pop("is_active", True),
        **fields,
    )
    db.session.add(workspace)
    db.session.commit()
    return workspace


def make_service(workspace: Workspace, **fields) -> WorkspaceService:
    service = WorkspaceService(
        workspace_id=workspace.id,
        name=fields.pop("name", f"Service {next(_seq)}"),
        currency=fields.pop("currency", "USD"),
        is_active=fields.pop("is_active", True),
        sort_order=fields.pop("sort_order", 0),
        **fields,
    )
    db.session.add(service)
    db.session.commit()
    return service


def make_connector(workspace: Workspace, **fields) -> SchedulingConnector:
    """An inactive Calendly connector by default (pass is_active=True for the active one)."""
    connector = SchedulingConnector(
        workspace_id=workspace.id,
        type=fields.pop("type", "calendly"),
        config=fields.pop("config", {"link": f"https://calendly.com/user{next(_seq)}/intro"}),
        is_active=fields.pop("is_active", False),
        **fields,
    )
    db.session.add(connector)
    db.session.commit()
    return connector


def make_conversation(workspace: Workspace, **fields) -> Conversation:
    conversation = Conversation(
        workspace_id=workspace.id,
        channel=fields.pop("channel", "web"),
        status=fields.pop("status", "active"),
        tags=fields.pop("tags", []),
        human_time_saved_minutes=fields.pop("human_time_saved_minutes", 0),
        **fields,
    )
    db.session.add(conversation)
    db.session.commit()
    return conversation


def make_message(
    conversation: Conversation, role: str = "user", content: str = "Hello", **fields
) -> ConversationMessage:
    """Appends through services.messages (strictly increasing timestamps), unless
    `timestamp` is given, which is stored as is (for dated analytics data)."""
    timestamp = fields.pop("timestamp", None)
    if timestamp is None:
        message = append_message(conversation, role, content, **fields)
    else:
        message = ConversationMessage(
            conversation_id=conversation.id,
            role=role,
            content=content,
            timestamp=timestamp,
            created_at=fields.pop("created_at", timestamp),
            meta=fields.pop("meta", {}),
            **fields,
        )
        db.session.add(message)
        if conversation.last_message_at is None or timestamp > conversation.last_message_at:
            conversation.last_message_at = timestamp
    db.session.commit()
    return message


def make_webhook(workspace: Workspace, **fields) -> WebhookSubscription:
    """An active subscription to every event type, at an https URL, by default."""
    subscription = WebhookSubscription(
        workspace_id=workspace.id,
        url=fields.pop("url", "https://hooks.example.com/in"),
        events=fields.pop("events", list(EVENT_TYPES)),
        is_active=fields.pop("is_active", True),
        secret=fields.pop("secret", new_secret()),
        consecutive_failures=fields.pop("consecutive_failures", 0),
        **fields,
    )
    db.session.add(subscription)
    db.session.commit()
    return subscription


def make_webhook_delivery(subscription: WebhookSubscription, **fields) -> WebhookDelivery:
    """A `message.created` event fanned out to `subscription`: a pending delivery, due now."""
    event = WebhookEvent(
        workspace_id=subscription.workspace_id,
        type=fields.pop("type", "message.created"),
        data=fields.pop("data", {"content": "Hello"}),
        fanned_out_at=utcnow(),
    )
    db.session.add(event)
    db.session.flush()
    delivery = WebhookDelivery(
        event_id=event.id,
        subscription_id=subscription.id,
        status=fields.pop("status", "pending"),
        attempts=fields.pop("attempts", 0),
        next_attempt_at=fields.pop("next_attempt_at", utcnow()),
        **fields,
    )
    db.session.add(delivery)
    db.session.commit()
    return delivery


def reload_run(run_id) -> AgentRun:
    """The run as the database has it now."""
    db.session.expire_all()
    return db.session.get(AgentRun, run_id)


def assistant_replies(conversation_id) -> list[ConversationMessage]:
    """The conversation's assistant messages as the database has them now, oldest first."""
    db.session.expire_all()
    return list(
        db.session.execute(
            select(ConversationMessage)
            .where(
                ConversationMessage.conversation_id == conversation_id,
                ConversationMessage.role == "assistant",
            )
            .order_by(ConversationMessage.timestamp)
        ).scalars()
    )
