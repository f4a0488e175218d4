"""A workspace's services (its catalog): CRUD, ordered by sort_order then name."""

import uuid

from backend.extensions import db
from backend.models import User, Workspace, WorkspaceService
from backend.services.pagination import page
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
    service = WorkspaceService(workspace_id=workspace.id, **data)
    db.session.add(service)
    db.session.commit()
    return service


def update_service(service: WorkspaceService, data: dict) -> WorkspaceService:
    for key, value in data.items():
        setattr(service, key, value)
    db.session.commit()
    return service


def delete_service(service: WorkspaceService) -> None:
    db.session.delete(service)
    db.session.commit()
