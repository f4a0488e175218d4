"""gunicorn settings: gevent workers, so one process holds many SSE streams."""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "2000"))
# SSE responses live for SSE_MAX_SECONDS; gevent workers heartbeat the arbiter
# on their own, so this only bounds a worker that is truly stuck.
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "10"))
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# A web process needs few Redis connections: its SSE hub reads all streams over two, short
# commands share a blocking pool and task sends a producer pool, and a burst of posts waits
# its turn for them (cooperatively) instead of opening more. bench/sse_hold.py: 8 connections
# for 10,000 held streams and 500 replies, against 42 with the general defaults (50 and 10).
# Set either in the environment to override.
os.environ.setdefault("REDIS_MAX_CONNECTIONS", "4")
os.environ.setdefault("CELERY_BROKER_POOL_LIMIT", "1")
# gevent records, for every greenlet, the stack that spawned it (a debugging aid): ~1.3 KB
# kept per held SSE stream (bench/sse_hold.py), and work at every spawn.
os.environ.setdefault("GEVENT_TRACK_GREENLET_TREE", "0")


def post_fork(server, worker):
    # gevent has patched sockets by now; psycopg2 is a C extension and must be
    # told to wait through gevent, or one slow query stalls every request.
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()


def post_worker_init(worker):
    # Each request is dispatched in a greenlet of its own, so a held SSE stream's greenlet
    # stays shallow and small; held streams end as soon as the worker is told to stop
    # (backend/serving.py).
    from backend.serving import dispatch_in_own_greenlet, end_streams_when_stopping

    app = worker.wsgi
    worker.wsgi = dispatch_in_own_greenlet(app)
    end_streams_when_stopping(worker, app.extensions["sse_hub"])
