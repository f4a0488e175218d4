"""How gunicorn's gevent worker calls the app (gunicorn.conf.py installs it).

A held SSE stream is a greenlet parked for minutes, and a greenlet keeps every page of
Python frame stack it ever touched (CPython 3.11 gives each greenlet a 16 KB chunk of its
own). Dispatching a request through Flask, the rate limiter and SQLAlchemy goes deep
enough to touch most of it. So each request is dispatched in a short-lived
greenlet of its own, which ends when the view has answered and takes its pages with it;
the connection's greenlet then only writes out the response, a few frames deep.
bench/sse_hold.py: ~3 KB less per held stream."""

import gevent


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
