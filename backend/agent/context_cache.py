"""A worker's agent contexts, kept per workspace while the rows they copy stand still.

`load_agent_context` reads the workspace with its owner, the active services and the active
connector into ORM objects for every run, though a workspace's facts rarely change between
two of its runs. On PostgreSQL one statement reads a version of those rows instead
(models.row_versions): the xmin of the workspace's and its owner's rows, and the number and
the sum of the xmins of its services and of its connectors. It moves whenever a fact may
have changed, and the context is loaded again. A write between the version and the load
only makes the kept context newer than its version, never older. SQLite loads every time.
"""

import uuid

from sqlalchemy import bindparam, select

from backend.agent.context import AgentContext, load_agent_context
from backend.errors import not_found
from backend.extensions import app_state, db
from backend.models import SchedulingConnector, User, Workspace, WorkspaceService
from backend.models.row_versions import row_xmin, rows_version

MAX_WORKSPACES = 2000


# Built once: building it for every run cost more CPU than running it.
CONTEXT_VERSION = (
    select(
        row_xmin(Workspace),
        row_xmin(User),
        rows_version(WorkspaceService, WorkspaceService.workspace_id == Workspace.id),
        rows_version(SchedulingConnector, SchedulingConnector.workspace_id == Workspace.id),
    )
    .join_from(Workspace, User, User.id == Workspace.owner_id)
    .where(Workspace.id == bindparam("workspace_id"))
)


def context_version(workspace_id: uuid.UUID):
    """The version of every row the workspace's context copies (None: no such workspace)."""
    return db.session.execute(CONTEXT_VERSION, {"workspace_id": workspace_id}).first()


class ContextCache:
    def __init__(self, _app: object = None) -> None:
        self._kept: dict[uuid.UUID, tuple[tuple, AgentContext]] = {}

    def get(self, workspace_id: uuid.UUID) -> AgentContext:
        if db.engine.dialect.name != "postgresql":
            return load_agent_context(workspace_id)
        row = context_version(workspace_id)
        if row is None:
            raise not_found("Workspace")
        version = tuple(row)
        kept = self._kept.get(workspace_id)
        if kept is not None and kept[0] == version:
            return kept[1]
        context = load_agent_context(workspace_id)
        if workspace_id not in self._kept and len(self._kept) >= MAX_WORKSPACES:
            self._kept.pop(next(iter(self._kept)))  # the one kept longest
        self._kept[workspace_id] = (version, context)
        return context


def agent_context(workspace_id: uuid.UUID) -> AgentContext:
    """The workspace's facts for a run: kept from an earlier run while they stand still."""
    return app_state("agent_contexts", ContextCache).get(workspace_id)
