"""`flask seed`: the demo owner, workspace, services and connector, idempotently."""

from decimal import Decimal

from sqlalchemy import func, select

from backend.extensions import db
from backend.models import SchedulingConnector, User, Workspace, WorkspaceService
from backend.security import verify_password
from backend.seed import CALENDLY_LINK, DEFAULT_DEMO_PASSWORD, DEMO_EMAIL
from tests.factories import make_connector, make_user, make_workspace


def run_seed(app, **env):
    result = app.test_cli_runner().invoke(args=["seed"], env=env or None)
    db.session.expire_all()
    return result


def snapshot() -> dict:
    """Every row the seed touches, by primary key, with the columns that matter."""
    users = db.session.execute(select(User.id, User.email, User.hashed_password)).all()
    workspaces = db.session.execute(select(Workspace.id, Workspace.handle, Workspace.knowledge_base)).all()
    services = db.session.execute(
        select(WorkspaceService.id, WorkspaceService.name, WorkspaceService.starting_price)
    ).all()
    connectors = db.session.execute(
        select(SchedulingConnector.id, SchedulingConnector.type, SchedulingConnector.is_active)
    ).all()
    return {
        "users": set(users),
        "workspaces": set(workspaces),
        "services": set(services),
        "connectors": set(connectors),
    }


def test_seed_creates_the_demo_rows(app, monkeypatch):
    monkeypatch.delenv("SEED_DEMO_PASSWORD", raising=False)
    result = run_seed(app)
    assert result.exit_code == 0, result.output
    assert "/chat/demo" in result.output

    user = db.session.execute(select(User).where(User.email == DEMO_EMAIL)).scalar_one()
    assert verify_password(DEFAULT_DEMO_PASSWORD, user.hashed_password)
    assert user.is_active and not user.is_superuser

    workspace = db.session.execute(select(Workspace).where(Workspace.handle == "demo")).scalar_one()
    assert workspace.owner_id == user.id and workspace.is_active
    assert workspace.type == "business" and workspace.tone == "friendly"
    assert workspace.timezone == "America/New_York"
    assert workspace.public_name and workspace.subtitle and workspace.description
    kb = workspace.knowledge_base
    assert 2000 < len(kb) < 24_000
    for topic in ("Hours", "Parking", "Cancellation", "Payment", "Location"):
        assert topic.lower() in kb.lower()

    services = (
        db.session.execute(
            select(WorkspaceService)
            .where(WorkspaceService.workspace_id == workspace.id)
            .order_by("sort_order")
        )
        .scalars()
        .all()
    )
    assert len(services) == 3
    assert all(
        s.is_active and s.currency == "USD" and s.duration_minutes and s.starting_price > 0 for s in services
    )
    assert services[0].starting_price == Decimal("140.00")

    (connector,) = db.session.execute(select(SchedulingConnector)).scalars().all()
    assert connector.workspace_id == workspace.id
    assert connector.type == "calendly" and connector.is_active
    assert connector.config == {"link": CALENDLY_LINK}


def test_seed_twice_keeps_the_same_rows(app):
    assert run_seed(app).exit_code == 0
    first = snapshot()
    assert {len(v) for v in first.values()} == {1, 3} and len(first["services"]) == 3
    assert run_seed(app).exit_code == 0
    assert snapshot() == first


def test_seed_uses_the_password_from_the_environment(app):
    assert run_seed(app, SEED_DEMO_PASSWORD="another-secret-pass").exit_code == 0
    user = db.session.execute(select(User).where(User.email == DEMO_EMAIL)).scalar_one()
    assert verify_password("another-secret-pass", user.hashed_password)
    assert not verify_password(DEFAULT_DEMO_PASSWORD, user.hashed_password)


def test_seed_rejects_a_too_short_password(app):
    result = run_seed(app, SEED_DEMO_PASSWORD="short")
    assert result.exit_code != 0 and "8 to 128" in result.output
    assert db.session.execute(select(func.count()).select_from(User)).scalar_one() == 0


def test_seed_restores_the_demo_connector_as_the_only_active_one(app):
    assert run_seed(app).exit_code == 0
    workspace = db.session.execute(select(Workspace).where(Workspace.handle == "demo")).scalar_one()
    demo = db.session.execute(select(SchedulingConnector)).scalar_one()
    demo.is_active = False
    db.session.commit()
    other = make_connector(workspace, is_active=True)

    assert run_seed(app).exit_code == 0
    db.session.refresh(other)
    db.session.refresh(demo)
    assert demo.is_active and not other.is_active
    assert db.session.execute(select(func.count()).select_from(SchedulingConnector)).scalar_one() == 2


def test_seed_leaves_a_demo_handle_owned_by_someone_else_alone(app):
    stranger = make_user(email="stranger@example.com")
    make_workspace(stranger, handle="demo", name="Not the demo")
    result = run_seed(app)
    assert result.exit_code != 0
    assert "belongs to another owner" in result.output
    workspace = db.session.execute(select(Workspace).where(Workspace.handle == "demo")).scalar_one()
    assert workspace.name == "Not the demo"
    assert db.session.execute(select(User).where(User.email == DEMO_EMAIL)).scalar_one_or_none() is None
