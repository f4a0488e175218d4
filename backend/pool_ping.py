"""Checking a pooled database connection before use, only when it sat idle long enough to
have been cut meanwhile.

SQLAlchemy's `pool_pre_ping` sends a `SELECT 1` on every checkout: under a burst that is
about 8 round trips per reply (bench/profile_burst.sh), each for a connection that was
handed back milliseconds before. A connection goes stale while it waits in the pool (the
server restarted, an administrator or a proxy ended the session), so one that was checked
in less than `idle_seconds` ago is handed out as it is; an older one is pinged first and,
if the ping fails, replaced (the pool retries the checkout with a new connection).
"""

import time

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

_RETURNED_AT = "returned_at"


def ping_after_idle(engine: Engine, idle_seconds: float, clock=time.monotonic) -> None:
    """Installs the check on `engine`'s pool."""

    @event.listens_for(engine, "checkin")
    def _stamp(dbapi_connection, record) -> None:
        if dbapi_connection is not None:  # None: invalidated on its way back
            record.info[_RETURNED_AT] = clock()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
        # `record.info` belongs to one DBAPI connection: a replaced one starts without a stamp.
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is None or clock() - returned_at < idle_seconds:
            return  # just connected, or back in the pool a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            idle = clock() - returned_at
            raise DisconnectionError(f"a pooled connection idle for {idle:.1f} s is gone") from error
