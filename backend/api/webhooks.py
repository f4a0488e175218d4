"""A workspace's webhooks: subscriptions, their secret, their delivery attempts."""

from flask.views import MethodView

from backend.api.access import authenticated, me
from backend.api.parsing import Blueprint
from backend.schemas.common import MessageSchema, PageArgsSchema
from backend.schemas.webhook import (
    WebhookAttemptPageSchema,
    WebhookCreateSchema,
    WebhookPageSchema,
    WebhookPublicSchema,
    WebhookUpdateSchema,
    WebhookWithSecretSchema,
)
from backend.services import webhooks
from backend.services.workspaces import get_accessible_workspace

URL_PREFIX = ""
blp = Blueprint("webhooks", __name__, description="Signed HTTP callbacks to the business's own systems.")


@blp.route("/workspaces/<workspace_id>/webhooks")
class WorkspaceWebhooks(MethodView):
    @authenticated
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, WebhookPageSchema)
    def get(self, args, workspace_id: str):
        """List a workspace's webhooks (oldest first; secrets are never listed)."""
        workspace = get_accessible_workspace(me(), workspace_id)
        items, count = webhooks.list_subscriptions(workspace, args["skip"], args["limit"])
        return {"data": items, "count": count}

    @authenticated
    @blp.arguments(WebhookCreateSchema)
    @blp.response(201, WebhookWithSecretSchema)
    def post(self, data, workspace_id: str):
        """Add a webhook (at most 10 per workspace); the answer is the only one with its secret."""
        workspace = get_accessible_workspace(me(), workspace_id)
        return webhooks.create_subscription(workspace, data)


@blp.route("/webhooks/<webhook_id>")
class WebhookItem(MethodView):
    @authenticated
    @blp.response(200, WebhookPublicSchema)
    def get(self, webhook_id: str):
        """Get a webhook."""
        return webhooks.get_accessible_subscription(me(), webhook_id)

    @authenticated
    @blp.arguments(WebhookUpdateSchema)
    @blp.response(200, WebhookPublicSchema)
    def patch(self, data, webhook_id: str):
        """Change a webhook's url, events or is_active (switching it on resets its failure count)."""
        subscription = webhooks.get_accessible_subscription(me(), webhook_id)
        return webhooks.update_subscription(subscription, data)

    @authenticated
    @blp.response(200, MessageSchema)
    def delete(self, webhook_id: str):
        """Delete a webhook and its delivery log."""
        webhooks.delete_subscription(webhooks.get_accessible_subscription(me(), webhook_id))
        return {"message": "Webhook deleted successfully"}


@blp.route("/webhooks/<webhook_id>/rotate-secret")
class WebhookSecret(MethodView):
    @authenticated
    @blp.response(200, WebhookWithSecretSchema)
    def post(self, webhook_id: str):
        """Replace a webhook's secret; the answer is the only one with the new secret."""
        return webhooks.rotate_secret(webhooks.get_accessible_subscription(me(), webhook_id))


@blp.route("/webhooks/<webhook_id>/deliveries")
class WebhookDeliveries(MethodView):
    @authenticated
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, WebhookAttemptPageSchema)
    def get(self, args, webhook_id: str):
        """List a webhook's delivery attempts, newest first."""
        subscription = webhooks.get_accessible_subscription(me(), webhook_id)
        items, count = webhooks.list_attempts(subscription, args["skip"], args["limit"])
        return {"data": items, "count": count}


@blp.route("/webhooks/deliveries/<delivery_id>/redeliver")
class WebhookRedeliver(MethodView):
    @authenticated
    @blp.response(202, MessageSchema)
    def post(self, delivery_id: str):
        """Send a delivery again now (its id, or the id of one of its attempts)."""
        webhooks.redeliver(me(), delivery_id)
        return {"message": "Redelivery queued"}
