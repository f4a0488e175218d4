"""The migrations build exactly the schema the models describe, and run both ways; 0002
normalises stored email addresses and stops, naming them, when two would collide."""

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from backend.extensions import db
from backend.models.types import UTCDateTime
from tests.conftest import TEST_DATABASE_URL, ensure_database
from tests.helpers import build_app

TABLES = {
    "user",
    "workspaces",
    "workspace_services",
    "scheduling_connectors",
    "conversations",
    "conversation_messages",
    "agent_runs",
    "message_activity",  # analytics counters (owner API)
    "push_tokens",  # owners' Expo push tokens
    "push_notifications",  # the outbox of pushes to owners' phones
    "webhook_subscriptions",
    "webhook_events",
    "webhook_deliveries",
    "webhook_attempts",
}


HEAD = "0006"


def _schema_diff(connection) -> list:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return compare_metadata(context, db.metadata)


def test_migrated_postgres_schema_matches_the_models():
    # The session database was built by running the migrations (conftest).
    with db.engine.connect() as connection:
        assert _schema_diff(connection) == []


def _round_trip(url: str) -> None:
    assert set(db.metadata.tables) == TABLES
    upgrade()
    assert TABLES <= set(inspect(db.engine).get_table_names())
    downgrade(revision="base")
    db.engine.dispose()
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    upgrade()
    db.engine.dispose()
    assert TABLES <= set(inspect(db.engine).get_table_names())
    with db.engine.connect() as connection:
        assert _schema_diff(connection) == [], url


def test_upgrade_downgrade_upgrade_on_sqlite(app, tmp_path):
    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    with build_app(app, SQLALCHEMY_DATABASE_URI=url) as other, other.app_context():
        _round_trip(url)


def test_upgrade_downgrade_upgrade_on_postgres(app):
    url = TEST_DATABASE_URL + "_migrations"  # a scratch database beside the test one
    ensure_database(url)
    pg_url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    with build_app(app, SQLALCHEMY_DATABASE_URI=pg_url) as other, other.app_context():
        downgrade(revision="base")  # a previous run may have left it migrated
        _round_trip(url)
        downgrade(revision="base")


USERS = sa.table(
    "user",
    sa.column("id", sa.Uuid()),
    sa.column("email", sa.String()),
    sa.column("hashed_password", sa.String()),
    sa.column("is_active", sa.Boolean()),
    sa.column("is_superuser", sa.Boolean()),
    sa.column("social_links", sa.JSON()),
    sa.column("setup_completed", sa.Boolean()),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)


def _insert_users(*emails: str) -> dict[str, uuid.UUID]:
    now = datetime.now(UTC)
    ids = {email: uuid.uuid4() for email in emails}
    with db.engine.begin() as connection:
        connection.execute(
            USERS.insert(),
            [
                {
                    "id": user_id,
                    "email": email,
                    "hashed_password": "x",
                    "is_active": True,
                    "is_superuser": False,
                    "social_links": {},
                    "setup_completed": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for email, user_id in ids.items()
            ],
        )
    return ids


def _stored() -> tuple[str, set[str], set[str]]:
    """(revision, stored emails, columns of "user") as the database has them now."""
    db.engine.dispose()
    with db.engine.connect() as connection:
        revision = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        emails = set(connection.execute(sa.select(USERS.c.email)).scalars())
    return revision, emails, {c["name"] for c in inspect(db.engine).get_columns("user")}


def _check_0002_on(url: str, caplog) -> None:
    upgrade(revision="0001")
    ids = _insert_users(
        "Admin@Example.com",
        "admin@example.com",
        "\uff21DMIN@example.com",
        "Jane@Example.COM",
        "solo@example.com",
    )
    with pytest.raises(SystemExit):
        upgrade()  # flask db upgrade: exits non-zero with the message
    message = caplog.text
    assert "Admin@Example.com, admin@example.com, \uff21DMIN@example.com -> admin@example.com" in message
    assert "jane" not in message.lower() and "solo" not in message
    # Stopped before changing anything.
    revision, emails, columns = _stored()
    assert revision == "0001" and "token_version" not in columns
    assert "Jane@Example.COM" in emails and len(emails) == 5

    with db.engine.begin() as connection:
        connection.execute(
            USERS.delete().where(USERS.c.id.in_([ids["admin@example.com"], ids["\uff21DMIN@example.com"]]))
        )
    upgrade()
    revision, emails, columns = _stored()
    assert revision == HEAD and "token_version" in columns
    assert emails == {"admin@example.com", "jane@example.com", "solo@example.com"}
    with db.engine.connect() as connection:
        assert set(connection.execute(sa.text('SELECT token_version FROM "user"')).scalars()) == {0}
        assert (
            connection.execute(sa.select(USERS.c.id).where(USERS.c.email == "admin@example.com")).scalar_one()
            == ids["Admin@Example.com"]
        )
        assert _schema_diff(connection) == [], url

    downgrade(revision="0001")
    revision, emails, columns = _stored()
    assert revision == "0001" and "token_version" not in columns
    assert emails == {"admin@example.com", "jane@example.com", "solo@example.com"}  # kept normalised


def _on_sqlite(app, path, check, caplog) -> None:
    """Runs `check(url, caplog)` in an app on a fresh SQLite file."""
    url = f"sqlite:///{path}"
    with build_app(app, SQLALCHEMY_DATABASE_URI=url) as other, other.app_context():
        check(url, caplog)


def _on_postgres(app, check, caplog) -> None:
    """Runs `check(url, caplog)` in an app on the scratch PostgreSQL database, emptied before and after."""
    url = TEST_DATABASE_URL + "_migrations"
    ensure_database(url)
    pg_url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    with build_app(app, SQLALCHEMY_DATABASE_URI=pg_url) as other, other.app_context():
        downgrade(revision="base")
        try:
            check(url, caplog)
        finally:
            downgrade(revision="base")


def test_0002_normalises_addresses_and_stops_on_collisions_on_sqlite(app, tmp_path, caplog):
    _on_sqlite(app, tmp_path / "collisions.db", _check_0002_on, caplog)


def test_0002_normalises_addresses_and_stops_on_collisions_on_postgres(app, caplog):
    _on_postgres(app, _check_0002_on, caplog)


WORKSPACES = sa.table(
    "workspaces",
    sa.column("id", sa.Uuid()),
    sa.column("owner_id", sa.Uuid()),
    sa.column("handle", sa.String()),
    sa.column("name", sa.String()),
    sa.column("type", sa.String()),
    sa.column("tone", sa.String()),
    sa.column("timezone", sa.String()),
    sa.column("is_active", sa.Boolean()),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)
SERVICES = sa.table(
    "workspace_services",
    sa.column("id", sa.Uuid()),
    sa.column("workspace_id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("currency", sa.String()),
    sa.column("is_active", sa.Boolean()),
    sa.column("sort_order", sa.Integer()),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)
LONG_TONE = "calm, warm and a little poetic, like a favourite aunt"[:50]


def _check_0003_on(url: str, caplog) -> None:
    upgrade(revision="0002")
    owner_id = _insert_users("owner@example.com")["owner@example.com"]
    now = datetime.now(UTC)
    workspace_id = uuid.uuid4()
    with db.engine.begin() as connection:
        connection.execute(
            WORKSPACES.insert().values(
                id=workspace_id, owner_id=owner_id, handle="studio", name="Studio", type="business",
                tone="friendly", timezone="UTC", is_active=True, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        connection.execute(
            SERVICES.insert().values(
                id=uuid.uuid4(), workspace_id=workspace_id, name="Class", currency="USD", is_active=True,
                sort_order=0, created_at=now, updated_at=now,
            )
        )  # fmt: skip
    upgrade()
    db.engine.dispose()
    user_columns = {c["name"] for c in inspect(db.engine).get_columns("user")}
    assert {"name", "about", "avatar_url", "profile_type", "faqs"} <= user_columns
    lengths = {
        c["name"]: getattr(c["type"], "length", None) for c in inspect(db.engine).get_columns("workspaces")
    }
    assert lengths["type"] == lengths["tone"] == 50
    with db.engine.begin() as connection:
        # Widening kept every row, the workspace's services included (no table rebuild).
        assert connection.execute(sa.select(sa.func.count()).select_from(SERVICES)).scalar_one() == 1
        connection.execute(WORKSPACES.update().values(tone=LONG_TONE, type="demo"))
        assert _schema_diff(connection) == [], url
        if db.engine.dialect.name == "sqlite":
            assert connection.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"

    downgrade(revision="0003")  # the later revisions first: 0003's own refusal is checked
    with pytest.raises(SystemExit):
        downgrade(revision="0002")
    assert "these workspaces hold longer values: studio" in caplog.text
    revision, _emails, columns = _stored()
    assert revision == "0003" and "faqs" in columns
    with db.engine.begin() as connection:
        connection.execute(WORKSPACES.update().values(tone="warm"))
    downgrade(revision="0002")
    revision, _emails, columns = _stored()
    assert revision == "0002" and not {"name", "about", "avatar_url", "profile_type", "faqs"} & columns
    lengths = {
        c["name"]: getattr(c["type"], "length", None) for c in inspect(db.engine).get_columns("workspaces")
    }
    assert lengths["type"] == lengths["tone"] == 20
    with db.engine.connect() as connection:
        assert connection.execute(sa.select(WORKSPACES.c.tone, WORKSPACES.c.type)).one() == ("warm", "demo")
        assert connection.execute(sa.select(sa.func.count()).select_from(SERVICES)).scalar_one() == 1


def test_0003_widens_type_and_tone_keeping_every_row_on_sqlite(app, tmp_path, caplog):
    _on_sqlite(app, tmp_path / "widen.db", _check_0003_on, caplog)


def test_0003_widens_type_and_tone_keeping_every_row_on_postgres(app, caplog):
    _on_postgres(app, _check_0003_on, caplog)
