"""Scheduling connectors, with at most one active connector per workspace.

Every path that turns a connector on (create, PATCH, activate) first locks the
workspace row, then switches the others off and this one on in the same
transaction, so two concurrent activations serialise and the later one wins.
The lock is `FOR NO KEY UPDATE`: it excludes other activations but not the
`FOR KEY SHARE` that foreign-key checks take, so inserting a conversation into
the workspace is never blocked by it. The partial unique index
`uq_scheduling_connectors_one_active` backs the rule; a violation is a 409.
"""

import uuid

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from backend.errors import Conflict, ValidationFailed
from backend.extensions import db
from backend.models import SchedulingConnector, User, Workspace
from backend.rules.connectors import config_problems
from backend.services.pagination import page
from backend.services.rows import delete_row
from backend.services.workspaces import get_owned

ALREADY_ACTIVE = "Another connector of this workspace is already active"


def list_connectors(workspace: Workspace, skip: int, limit: int) -> tuple[list[SchedulingConnector], int]:
    return page(
        SchedulingConnector,
        [SchedulingConnector.workspace_id == workspace.id],
        [SchedulingConnector.created_at, SchedulingConnector.id],
        skip,
        limit,
    )


def get_accessible_connector(user: User, connector_id: uuid.UUID | str) -> SchedulingConnector:
    return get_owned(user, SchedulingConnector, connector_id, "Connector")


def active_connector(workspace_id: uuid.UUID, session=None) -> SchedulingConnector | None:
    """The workspace's active connector (at most one is active; the oldest if data ever
    held more). `session`: the one to read with (a flush listener passes its own)."""
    return (
        (session or db.session)
        .scalars(
            select(SchedulingConnector)
            .where(SchedulingConnector.workspace_id == workspace_id, SchedulingConnector.is_active.is_(True))
            .order_by(SchedulingConnector.created_at)
            .limit(1)
        )
        .first()
    )


def switch_off_others(workspace_id: uuid.UUID, keep_id: uuid.UUID | None) -> None:
    """Locks the workspace, then deactivates its active connectors other than `keep_id`
    (the one-active index is checked per statement: the others go off first)."""
    db.session.execute(
        select(Workspace.id).where(Workspace.id == workspace_id).with_for_update(key_share=True)
    )
    statement = update(SchedulingConnector).where(
        SchedulingConnector.workspace_id == workspace_id, SchedulingConnector.is_active.is_(True)
    )
    if keep_id is not None:
        statement = statement.where(SchedulingConnector.id != keep_id)
    db.session.execute(statement.values(is_active=False), execution_options={"synchronize_session": False})


def _commit() -> None:
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise Conflict(ALREADY_ACTIVE) from exc


def create_connector(workspace: Workspace, data: dict) -> SchedulingConnector:
    connector = SchedulingConnector(id=uuid.uuid4(), workspace_id=workspace.id, **data)
    if connector.is_active:
        switch_off_others(workspace.id, connector.id)
    db.session.add(connector)
    _commit()
    return connector


def update_connector(connector: SchedulingConnector, data: dict) -> SchedulingConnector:
    if "type" in data or "config" in data:
        connector_type = data.get("type", connector.type)
        problems = config_problems(connector_type, data.get("config", connector.config))
        if problems:
            raise ValidationFailed({"config": problems})
    if data.get("is_active"):
        switch_off_others(connector.workspace_id, connector.id)
        # Re-read under the lock: the copy loaded before it may say "active" while a
        # concurrent activation has since switched it off, and the ORM writes no
        # UPDATE for a value it believes unchanged.
        db.session.refresh(connector)
    for key, value in data.items():
        setattr(connector, key, value)
    _commit()
    return connector


def activate_connector(connector: SchedulingConnector) -> SchedulingConnector:
    return update_connector(connector, {"is_active": True})


def deactivate_connector(connector: SchedulingConnector) -> SchedulingConnector:
    return update_connector(connector, {"is_active": False})


def delete_connector(connector: SchedulingConnector) -> None:
    delete_row(connector)
