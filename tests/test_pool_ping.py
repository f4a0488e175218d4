"""A pooled connection is pinged before use only after sitting idle (backend/pool_ping.py),
on the real PostgreSQL: a connection cut while idle is replaced without the caller noticing,
a live one is kept, and one handed back a moment ago is used without a round trip."""

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from backend.config import normalize_database_url
from backend.pool_ping import ping_after_idle
from tests.conftest import TEST_DATABASE_URL

IDLE_LIMIT = 1.0
URL = normalize_database_url(TEST_DATABASE_URL)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def engine(clock):
    engine = create_engine(URL, pool_size=1, max_overflow=0)
    ping_after_idle(engine, IDLE_LIMIT, clock=clock)
    yield engine
    engine.dispose()


@pytest.fixture
def admin():
    admin = create_engine(URL)
    yield admin
    admin.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def terminate(admin, pid: int) -> None:
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
        conn.commit()


def test_a_connection_cut_while_idle_is_replaced_before_use(engine, admin, clock):
    first = backend_pid(engine)
    terminate(admin, first)
    clock.now += IDLE_LIMIT + 0.1
    second = backend_pid(engine)  # no error reaches the caller
    assert second != first


def test_a_live_idle_connection_is_kept(engine, clock):
    first = backend_pid(engine)
    clock.now += IDLE_LIMIT + 5
    assert backend_pid(engine) == first


def test_a_connection_handed_back_a_moment_ago_is_used_without_a_ping(engine, admin, clock):
    """The other side of the trade: no round trip for a connection just handed back, so
    one cut within that moment fails its first statement (as one cut mid-request does),
    and the pool replaces it for the next caller."""
    first = backend_pid(engine)
    terminate(admin, first)
    clock.now += IDLE_LIMIT / 2
    with pytest.raises(OperationalError):
        backend_pid(engine)
    assert backend_pid(engine) != first
