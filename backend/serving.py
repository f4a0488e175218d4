"""How gunicorn's gevent worker calls the app (gunicorn.conf.py installs it).

A held SSE stream is a greenlet parked for minutes, and a greenlet keeps every page of
Python frame stack it ever touched (CPython 3.11 gives each greenlet a 16 KB chunk of its
own). Dispatching a request through Flask, the rate limiter and SQLAlchemy goes deep
enough to touch most of it. So each request is dispatched in a short-lived
greenlet of its own, which ends when the view has answered and takes its pages with it;
the connection's greenlet then only writes out the response, a few frames deep.
bench/sse_hold.py: ~3 KB less per held stream.

A stopping worker also ends its held streams at once (end_streams_when_stopping): they
would otherwise keep it for its whole graceful timeout, then be cut."""

import logging

import gevent

log = logging.getLogger(__name__)


def dispatch_in_own_greenlet(wsgi_app):
    """`wsgi_app`, called in a greenlet of its own for each request; its answer (or its
    error) is the caller's. A caller killed while it waits (a worker stopping) kills it too."""

    def app(environ, start_response):
        dispatch = gevent.spawn(wsgi_app, environ, start_response)
        try:
            return dispatch.get()
        finally:
            dispatch.kill(block=False)  # a no-op once it has answered

    return app


def end_streams_when_stopping(worker, hub, poll_seconds: float = 0.5):
    """Watches the worker (gunicorn sets `worker.alive` to False when told to stop: SIGTERM,
    SIGINT, SIGQUIT) and then ends every held stream (`hub.end_all`). Without it a stopping
    worker waits out its graceful timeout for streams that would never end by themselves,
    and is then killed with them. Returns the watching greenlet."""

    def watch():
        while worker.alive:
            gevent.sleep(poll_seconds)
        ended = hub.end_all("server_stopping")
        log.info("the worker is stopping: ended %d held streams", ended)

    return gevent.spawn(watch)
