"""Scheduling connectors (Calendly, Square, AgendaPro); at most one active per workspace."""

from flask.views import MethodView

from backend.api.access import authenticated, me
from backend.api.parsing import Blueprint
from backend.schemas.common import MessageSchema, PageArgsSchema
from backend.schemas.connector import (
    ConnectorCreateSchema,
    ConnectorPageSchema,
    ConnectorPublicSchema,
    ConnectorUpdateSchema,
)
from backend.services import connectors
from backend.services.workspaces import get_accessible_workspace

URL_PREFIX = "/connectors"
blp = Blueprint("connectors", __name__, description="Scheduling connectors (Calendly, Square, AgendaPro).")


@blp.route("/workspaces/<workspace_id>")
class WorkspaceConnectors(MethodView):
    @authenticated
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, ConnectorPageSchema)
    def get(self, args, workspace_id: str):
        """List a workspace's connectors."""
        workspace = get_accessible_workspace(me(), workspace_id)
        items, count = connectors.list_connectors(workspace, args["skip"], args["limit"])
        return {"data": items, "count": count}

    @authenticated
    @blp.arguments(ConnectorCreateSchema)
    @blp.response(201, ConnectorPublicSchema)
    def post(self, data, workspace_id: str):
        """Add a connector (an active one deactivates the others)."""
        workspace = get_accessible_workspace(me(), workspace_id)
        return connectors.create_connector(workspace, data)


@blp.route("/<connector_id>")
class ConnectorItem(MethodView):
    @authenticated
    @blp.response(200, ConnectorPublicSchema)
    def get(self, connector_id: str):
        """Get a connector."""
        return connectors.get_accessible_connector(me(), connector_id)

    @authenticated
    @blp.arguments(ConnectorUpdateSchema)
    @blp.response(200, ConnectorPublicSchema)
    def patch(self, data, connector_id: str):
        """Update a connector (activating it deactivates the others)."""
        connector = connectors.get_accessible_connector(me(), connector_id)
        return connectors.update_connector(connector, data)

    @authenticated
    @blp.response(200, MessageSchema)
    def delete(self, connector_id: str):
        """Delete a connector."""
        connectors.delete_connector(connectors.get_accessible_connector(me(), connector_id))
        return {"message": "Connector deleted successfully"}


@blp.route("/<connector_id>/activate", methods=["POST"])
@authenticated
@blp.response(200, ConnectorPublicSchema)
def activate(connector_id: str):
    """Activate a connector and deactivate the workspace's others."""
    return connectors.activate_connector(connectors.get_accessible_connector(me(), connector_id))


@blp.route("/<connector_id>/deactivate", methods=["POST"])
@authenticated
@blp.response(200, ConnectorPublicSchema)
def deactivate(connector_id: str):
    """Deactivate a connector."""
    return connectors.deactivate_connector(connectors.get_accessible_connector(me(), connector_id))
