"""A workspace's services (its catalog): CRUD, ordered by sort_order then name."""

import uuid

from backend.models import User, Workspace, WorkspaceService
from backend.services.pagination import page
from backend.services.rows import delete_row, save_new, update_fields
from backend.services.workspaces import get_owned


def list_services(workspace: Workspace, skip: int, limit: int) -> tuple[list[WorkspaceService], int]:
    return page(
        WorkspaceService,
        [WorkspaceService.workspace_id == workspace.id],
        [WorkspaceService.sort_order, WorkspaceService.name, WorkspaceService.id],
        skip,
        limit,
    )


def get_accessible_service(user: User, service_id: uuid.UUID | str) -> WorkspaceService:
    return get_owned(user, WorkspaceService, service_id, "Service")


def create_service(workspace: Workspace, data: dict) -> WorkspaceService:
    return save_new(WorkspaceService(workspace_id=workspace.id, **data))


def update_service(service: WorkspaceService, data: dict) -> WorkspaceService:
    return update_fields(service, data)


def delete_service(service: WorkspaceService) -> None:
    delete_row(service)
