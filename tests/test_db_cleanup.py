"""The cleanup between tests (tests/db_cleanup.py) against a real PostgreSQL backend that
holds locks on the tables, as a Celery worker finishing a run does."""

import threading
import time

import psycopg2
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from backend.extensions import db
from backend.models import Workspace
from tests import db_cleanup
from tests.conftest import TEST_DATABASE_URL
from tests.factories import make_workspace


def other_backend():
    url = make_url(TEST_DATABASE_URL)
    return psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database)


def table_names() -> list[str]:
    return [table.name for table in db.metadata.sorted_tables]


@pytest.fixture
def lock_refused():
    """Set once the cleanup asked for the table locks and was refused."""
    refused = threading.Event()

    def on_error(context):
        if context.statement and context.statement.startswith("LOCK TABLE"):
            refused.set()

    event.listen(db.engine, "handle_error", on_error)
    yield refused
    event.remove(db.engine, "handle_error", on_error)


def wait_until_the_cleanup_met_the_lock(refused: threading.Event, holder_pid: int) -> None:
    """Until the cleanup was refused a lock, or (a cleanup that waits) waits behind the holder."""
    deadline = time.monotonic() + 10
    blocked = text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))")
    while not refused.is_set():
        with db.engine.connect() as conn:
            if conn.execute(blocked, {"pid": holder_pid}).scalar():
                return
        assert time.monotonic() < deadline, "the cleanup never met the held lock"
        refused.wait(0.02)


def test_a_transaction_holding_locks_finishes_and_the_tables_are_emptied(lock_refused):
    workspace_id = make_workspace().id
    db.session.commit()
    holder = other_backend()
    outcome: dict = {}
    engine, tables = db.engine, table_names()

    def clean():
        try:
            db_cleanup.truncate_all(engine, tables)
            outcome["done"] = True
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    cleaner = threading.Thread(target=clean)
    try:
        with holder.cursor() as cursor:  # a run being finished: agent_runs first
            cursor.execute("LOCK TABLE agent_runs IN ROW EXCLUSIVE MODE")
            cleaner.start()
            wait_until_the_cleanup_met_the_lock(lock_refused, holder.get_backend_pid())
            # A plain TRUNCATE now holds every table before agent_runs and waits for it: this
            # UPDATE would wait for the TRUNCATE, a deadlock PostgreSQL ends by aborting one.
            cursor.execute("UPDATE workspaces SET name = 'busy' WHERE id = %s", (str(workspace_id),))
            assert cursor.rowcount == 1
        holder.commit()
    finally:
        holder.close()
    cleaner.join(30)
    assert not cleaner.is_alive() and outcome == {"done": True}, outcome
    db.session.remove()
    assert db.session.scalar(db.select(db.func.count()).select_from(Workspace)) == 0


def test_a_backend_that_keeps_its_lock_is_terminated(monkeypatch):
    monkeypatch.setattr(db_cleanup, "PATIENCE_SECONDS", 0.2)
    workspace_id = make_workspace().id
    db.session.commit()
    holder = other_backend()
    try:
        with holder.cursor() as cursor:  # idle in transaction, holding a row lock, forever
            cursor.execute("SELECT id FROM workspaces WHERE id = %s FOR UPDATE", (str(workspace_id),))
        with pytest.warns(UserWarning, match="terminating backends"):
            db_cleanup.truncate_all(db.engine, table_names())
        with pytest.raises(psycopg2.OperationalError), holder.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        holder.close()
    db.session.remove()
    assert db.session.scalar(db.select(db.func.count()).select_from(Workspace)) == 0
