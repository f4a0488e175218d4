"""Fixtures: a fresh PostgreSQL schema per test run (built by the real migrations),
tables truncated and the Redis test database flushed after every test."""

import os

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from backend import create_app
from backend.config import DEFAULT_TEST_DATABASE_URL, DEFAULT_TEST_REDIS_URL, TestConfig
from backend.extensions import db, redis_client
from tests.db_cleanup import admin_connection, terminate_other_backends, truncate_all

# TestConfig read these when backend.config was imported; the same values go into the
# environment for the processes the e2e tests start.
TEST_DATABASE_URL = os.environ.setdefault("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
TEST_REDIS_URL = os.environ.setdefault("TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)


def ensure_database(url: str) -> None:
    """Creates the test database when it does not exist yet."""
    name = make_url(url).database
    conn = admin_connection(url)
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


@pytest.fixture(scope="session")
def app():
    from flask_migrate import upgrade

    ensure_database(TEST_DATABASE_URL)
    terminate_other_backends(TEST_DATABASE_URL)
    app = create_app(TestConfig)
    with app.app_context():
        db.session.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        db.session.commit()
        upgrade()
    yield app
    app.extensions["sse_hub"].stop()
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _app_context(app):
    with app.app_context():
        yield
        db.session.remove()
        truncate_all(db.engine, [table.name for table in db.metadata.sorted_tables])
        redis_client().flushdb()


@pytest.fixture
def client(app):
    return app.test_client()
