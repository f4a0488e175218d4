"""The migrations build exactly the schema the models describe, and run both ways."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from backend.extensions import db
from tests.conftest import TEST_DATABASE_URL, ensure_database
from tests.test_errors import build_app

TABLES = {
    "user",
    "workspaces",
    "workspace_services",
    "scheduling_connectors",
    "conversations",
    "conversation_messages",
    "agent_runs",
    "message_activity",  # analytics counters (owner API)
}


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
