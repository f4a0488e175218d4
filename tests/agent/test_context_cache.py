"""A worker keeps each workspace's agent context between runs while the rows it copies
stand still (backend/agent/context_cache.py), and loads it again after any write to the
workspace, its owner, its services or its connectors."""

import uuid

import pytest
from sqlalchemy import event

from backend.agent.context_cache import agent_context
from backend.errors import NotFound
from backend.extensions import db
from backend.models import SchedulingConnector, User, Workspace, WorkspaceService
from tests.agent.factories import make_connector, make_service, make_workspace


def statements_of(call):
    seen = []

    def record(*args):
        seen.append(args[2])

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        result = call()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    db.session.close()
    return result, seen


def test_a_kept_context_costs_one_statement_and_is_the_same(app):
    workspace = make_workspace(tone="friendly")
    make_service(workspace, "Massage")
    first, _ = statements_of(lambda: agent_context(workspace.id))
    again, seen = statements_of(lambda: agent_context(workspace.id))
    assert again is first
    assert len(seen) == 1 and "xmin" in seen[0]


def test_every_write_a_fact_comes_from_loads_it_again(app):
    workspace = make_workspace(tone="friendly")
    service = make_service(workspace, "Massage")
    assert [s.name for s in agent_context(workspace.id).services] == ["Massage"]

    def changed(change):
        change()
        db.session.commit()
        return agent_context(workspace.id)

    ctx = changed(lambda: setattr(db.session.get(Workspace, workspace.id), "tone", "formal"))
    assert ctx.workspace.tone == "formal"
    ctx = changed(lambda: setattr(db.session.get(User, workspace.owner_id), "bio", "Ten years of massage"))
    assert ctx.owner.bio == "Ten years of massage"
    ctx = changed(lambda: setattr(db.session.get(WorkspaceService, service.id), "name", "Deep massage"))
    assert [s.name for s in ctx.services] == ["Deep massage"]
    make_service(workspace, "Facial", sort_order=1)
    assert [s.name for s in agent_context(workspace.id).services] == ["Deep massage", "Facial"]
    ctx = changed(lambda: db.session.delete(db.session.get(WorkspaceService, service.id)))
    assert [s.name for s in ctx.services] == ["Facial"]

    connector = make_connector(workspace, "https://calendly.com/shop/intro")
    assert agent_context(workspace.id).booking.link == "https://calendly.com/shop/intro"
    ctx = changed(lambda: setattr(db.session.get(SchedulingConnector, connector.id), "is_active", False))
    assert ctx.booking is None


def test_an_unknown_workspace_is_not_found(app):
    with pytest.raises(NotFound):
        agent_context(uuid.uuid4())
