"""Workspaces (one per owner): CRUD, the auto-created `me`, and analytics."""

from flask.views import MethodView

from backend.api.access import authenticated, me
from backend.api.parsing import Blueprint, body_limit
from backend.schemas.common import MessageSchema, PageArgsSchema, upload_schema
from backend.schemas.workspace import (
    AnalyticsArgsSchema,
    AnalyticsSchema,
    WorkspaceCreateSchema,
    WorkspacePageSchema,
    WorkspacePublicSchema,
    WorkspaceUpdateSchema,
)
from backend.services import analytics, media, workspaces

URL_PREFIX = "/workspaces"
blp = Blueprint("workspaces", __name__, description="Workspaces (one per owner).")


@blp.route("/")
class WorkspaceCollection(MethodView):
    @authenticated(superuser=True)
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, WorkspacePageSchema)
    def get(self, args):
        """List every workspace (superusers only)."""
        items, count = workspaces.list_workspaces(args["skip"], args["limit"])
        return {"data": items, "count": count}

    @authenticated
    @blp.arguments(WorkspaceCreateSchema)
    @blp.response(201, WorkspacePublicSchema)
    def post(self, data):
        """Create the current user's workspace."""
        return workspaces.create_workspace(me(), data)


@blp.route("/me")
class MyWorkspace(MethodView):
    @authenticated
    @blp.response(200, WorkspacePublicSchema)
    def get(self):
        """Get the current user's workspace, creating it with defaults if missing."""
        return workspaces.get_or_create_for_user(me())


@blp.route("/<workspace_id>")
class WorkspaceItem(MethodView):
    @authenticated
    @blp.response(200, WorkspacePublicSchema)
    def get(self, workspace_id: str):
        """Get a workspace."""
        return workspaces.get_accessible_workspace(me(), workspace_id)

    @authenticated
    @blp.arguments(WorkspaceUpdateSchema)
    @blp.response(200, WorkspacePublicSchema)
    def patch(self, data, workspace_id: str):
        """Update a workspace."""
        workspace = workspaces.get_accessible_workspace(me(), workspace_id)
        return workspaces.update_workspace(workspace, data)

    @authenticated
    @blp.response(200, MessageSchema)
    def delete(self, workspace_id: str):
        """Delete an empty workspace."""
        workspace = workspaces.get_accessible_workspace(me(), workspace_id)
        workspaces.delete_workspace(workspace)
        return {"message": "Workspace deleted successfully"}


ImageUploadSchema = upload_schema("image", media.UPLOAD_DESCRIPTION)


@blp.route("/<workspace_id>/profile-image", methods=["POST"])
@body_limit(media.UPLOAD_BODY_LIMIT)
@authenticated
@blp.arguments(ImageUploadSchema, location="files")
@blp.response(200, WorkspacePublicSchema)
def upload_profile_image(files, workspace_id: str):
    """Upload the workspace's profile image (multipart field `image`); sets `profile_image_url`,
    shown on the public profile. JPEG, PNG or WebP up to 5 MB; stored re-encoded, without
    metadata, at most 1024 px a side. The previous image is deleted."""
    workspace = workspaces.get_accessible_workspace(me(), workspace_id)
    return workspaces.set_profile_image(workspace, files["image"])


@blp.route("/<workspace_id>/analytics")
class WorkspaceAnalytics(MethodView):
    @authenticated
    @blp.arguments(AnalyticsArgsSchema, location="query")
    @blp.response(200, AnalyticsSchema)
    def get(self, args, workspace_id: str):
        """Daily activity of a workspace over the last `days` days (its local dates)."""
        workspace = workspaces.get_accessible_workspace(me(), workspace_id)
        return analytics.workspace_analytics(workspace, args["days"])
