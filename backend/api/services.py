"""A workspace's bookable services."""

from flask.views import MethodView

from backend.api.access import authenticated, me
from backend.api.parsing import Blueprint
from backend.schemas.common import MessageSchema, PageArgsSchema
from backend.schemas.service import (
    ServiceCreateSchema,
    ServicePageSchema,
    ServicePublicSchema,
    ServiceUpdateSchema,
)
from backend.services import catalog
from backend.services.workspaces import get_accessible_workspace

URL_PREFIX = "/workspace-services"
blp = Blueprint("workspace-services", __name__, description="A workspace's bookable services.")


@blp.route("/workspaces/<workspace_id>")
class WorkspaceServices(MethodView):
    @authenticated
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, ServicePageSchema)
    def get(self, args, workspace_id: str):
        """List a workspace's services (by sort_order, then name)."""
        workspace = get_accessible_workspace(me(), workspace_id)
        items, count = catalog.list_services(workspace, args["skip"], args["limit"])
        return {"data": items, "count": count}

    @authenticated
    @blp.arguments(ServiceCreateSchema)
    @blp.response(201, ServicePublicSchema)
    def post(self, data, workspace_id: str):
        """Add a service to a workspace."""
        workspace = get_accessible_workspace(me(), workspace_id)
        return catalog.create_service(workspace, data)


@blp.route("/<service_id>")
class ServiceItem(MethodView):
    @authenticated
    @blp.response(200, ServicePublicSchema)
    def get(self, service_id: str):
        """Get a service."""
        return catalog.get_accessible_service(me(), service_id)

    @authenticated
    @blp.arguments(ServiceUpdateSchema)
    @blp.response(200, ServicePublicSchema)
    def patch(self, data, service_id: str):
        """Update a service."""
        service = catalog.get_accessible_service(me(), service_id)
        return catalog.update_service(service, data)

    @authenticated
    @blp.response(200, MessageSchema)
    def delete(self, service_id: str):
        """Delete a service."""
        catalog.delete_service(catalog.get_accessible_service(me(), service_id))
        return {"message": "Service deleted successfully"}
