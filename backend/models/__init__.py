"""SQLAlchemy models, one module per aggregate."""

from backend.models.activity import MessageActivity
from backend.models.conversation import Conversation, ConversationMessage
from backend.models.push import PushNotification, PushToken
from backend.models.run import AgentRun
from backend.models.user import User
from backend.models.webhook import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription
from backend.models.workspace import SchedulingConnector, Workspace, WorkspaceService

__all__ = [
    "AgentRun",
    "Conversation",
    "ConversationMessage",
    "MessageActivity",
    "PushNotification",
    "PushToken",
    "SchedulingConnector",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookSubscription",
    "Workspace",
    "WorkspaceService",
]
