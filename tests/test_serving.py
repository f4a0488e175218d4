"""backend/serving.py: gunicorn's gevent worker dispatches each request in a greenlet of
its own (so a held stream's greenlet stays small)."""

import gevent
import gevent.event
import pytest

from backend.serving import dispatch_in_own_greenlet, end_streams_when_stopping


def test_the_app_runs_in_another_greenlet_and_its_answer_is_the_callers():
    seen = {}

    def wsgi_app(environ, start_response):
        seen["greenlet"] = gevent.getcurrent()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello ", environ["PATH_INFO"].encode()]

    started = []
    body = gevent.spawn(
        dispatch_in_own_greenlet(wsgi_app), {"PATH_INFO": "/x"}, lambda *a: started.append(a)
    ).get()
    assert body == [b"hello ", b"/x"] and started == [("200 OK", [("Content-Type", "text/plain")])]
    assert seen["greenlet"].dead  # it ended with its answer: its frame stack went with it


def test_the_apps_error_is_raised_to_the_caller():
    def wsgi_app(environ, start_response):
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        dispatch_in_own_greenlet(wsgi_app)({}, None)


def test_a_caller_killed_while_waiting_kills_the_dispatch():
    entered, finished, dispatches = gevent.event.Event(), [], []

    def wsgi_app(environ, start_response):
        dispatches.append(gevent.getcurrent())
        entered.set()
        gevent.sleep(10)
        finished.append(True)

    caller = gevent.spawn(dispatch_in_own_greenlet(wsgi_app), {}, None)
    entered.wait(2)
    caller.kill(block=True, timeout=2)
    gevent.sleep(0.05)
    assert caller.dead and dispatches[0].dead and finished == []


def test_a_stopping_worker_has_its_held_streams_ended():
    class Worker:
        alive = True

    class Hub:
        ended: list[str] = []

        def end_all(self, reason):
            self.ended.append(reason)
            return 2

    worker, hub = Worker(), Hub()
    watcher = end_streams_when_stopping(worker, hub, poll_seconds=0.01)
    gevent.sleep(0.05)
    assert hub.ended == []  # nothing while the worker serves
    worker.alive = False  # what gunicorn does on SIGTERM, SIGINT or SIGQUIT
    watcher.join(timeout=1)
    assert watcher.dead and hub.ended == ["server_stopping"]
