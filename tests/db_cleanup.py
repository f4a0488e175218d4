"""Emptying the test database between tests while other processes may still use it.

The e2e tests run gunicorn and Celery workers as real processes against the same
database, and their recovery loops touch it every second. A TRUNCATE that waits for a
lock one of them holds, while that process waits for a lock the TRUNCATE already took,
is a deadlock, and PostgreSQL may abort either side. So the cleanup never waits: it
asks for every table's lock with NOWAIT (a backend that does not wait cannot be part
of a deadlock), gives them all back at once when one is taken, and asks again. A
backend that keeps a lock for longer than a test can have a reason to is terminated.
"""

import time
import warnings

import psycopg2
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError

LOCK_NOT_AVAILABLE = "55P03"
DEADLOCK_DETECTED = "40P01"
PATIENCE_SECONDS = 5.0  # then the backends holding locks on the tables are terminated
GIVE_UP_SECONDS = 60.0

LOCK_HOLDERS = text(
    """
    SELECT DISTINCT a.pid, a.application_name, a.state, left(a.query, 200) AS query
    FROM pg_locks l
    JOIN pg_class c ON c.oid = l.relation
    JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.granted
      AND l.pid <> pg_backend_pid()
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND c.relnamespace = 'public'::regnamespace
      AND c.relname = ANY(:tables)
    """
)


def _pgcode(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "pgcode", None)


def truncate_all(engine: Engine, tables: list[str]) -> None:
    """Empties `tables` in one transaction, without ever waiting for a lock."""
    quoted = ", ".join(f'"{name}"' for name in tables)
    started = time.monotonic()
    pause = 0.01
    while True:
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"LOCK TABLE {quoted} IN ACCESS EXCLUSIVE MODE NOWAIT")
                conn.exec_driver_sql(f"TRUNCATE {quoted} CASCADE")
            return
        except DBAPIError as exc:
            if _pgcode(exc) not in (LOCK_NOT_AVAILABLE, DEADLOCK_DETECTED):
                raise
            waited = time.monotonic() - started
            if waited > GIVE_UP_SECONDS:
                raise RuntimeError(
                    f"could not lock {quoted} for {waited:.0f}s: {lock_holders(engine, tables)}"
                ) from exc
            if waited > PATIENCE_SECONDS:
                terminate_lock_holders(engine, tables)
        time.sleep(pause)  # a pause between attempts, not a condition: the loop ends on success
        pause = min(pause * 2, 0.2)


def lock_holders(engine: Engine, tables: list[str]) -> list[dict]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(LOCK_HOLDERS, {"tables": tables})]


def terminate_lock_holders(engine: Engine, tables: list[str]) -> None:
    holders = lock_holders(engine, tables)
    if not holders:
        return
    warnings.warn(f"terminating backends that kept locks on the test tables: {holders}", stacklevel=2)
    with engine.connect() as conn:
        for holder in holders:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder["pid"]})
        conn.commit()


def admin_connection(url: str):
    """An autocommit connection to the server's `postgres` database, as `url`'s user."""
    parsed = make_url(url)
    conn = psycopg2.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        dbname="postgres",
        password=parsed.password,
    )
    conn.autocommit = True
    return conn


def terminate_other_backends(url: str) -> list[int]:
    """Ends every session on the test database: before the schema is rebuilt, nothing
    from an earlier run (a process left behind by an interrupted session) may hold it."""
    parsed = make_url(url)
    conn = admin_connection(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (parsed.database,),
            )
            pids = [pid for (pid,) in cur.fetchall()]
            for pid in pids:
                cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return pids
    finally:
        conn.close()
