"""A web process told to stop (SIGTERM, as on every deploy) while visitors hold streams:
the streams end at once, each written to the request log, and the process exits well
inside its graceful timeout instead of being killed with them."""

import signal
import time

import requests

from tests.e2e.chat import Visitor
from tests.e2e.conftest import LOG_DIR
from tests.e2e.harness import start_web
from tests.factories import make_workspace

GRACEFUL_SECONDS = 30


class WebOf:
    """A second web process of the stack's environment (its own port): `Visitor` needs
    only `api()`."""

    def __init__(self, stack, **env):
        self.web, self.url = start_web({**stack.env, **env}, LOG_DIR)

    def api(self, path: str) -> str:
        return f"{self.url}/api/v1{path}"


def test_sigterm_ends_held_streams_at_once_and_the_web_exits_inside_its_graceful_timeout(stack):
    handle = make_workspace().handle
    web = WebOf(stack, WEB_GRACEFUL_TIMEOUT=str(GRACEFUL_SECONDS))
    try:
        visitors = [Visitor(web, handle) for _ in range(3)]
        streams = [visitor.stream(timeout=20) for visitor in visitors]
        for stream in streams:
            assert next(iter(stream)).event == ":comment"  # `: connected`: the stream is held
        stopped_at = time.monotonic()
        web.web.proc.send_signal(signal.SIGTERM)  # the master: it stops its worker
        for stream in streams:
            rest = list(stream)  # ends when the server ends the response
            assert all(event.event == ":comment" for event in rest)
        ended_after = time.monotonic() - stopped_at
        web.web.proc.wait(timeout=15)
        exited_after = time.monotonic() - stopped_at
    finally:
        web.web.kill()
    # The watcher looks every 0.5 s. The worker then waits only for its idle keep-alive
    # connections (gunicorn's keepalive, 5 s), far inside its graceful timeout: without the
    # watcher it would wait all of it, then kill the streams.
    assert ended_after < 4, f"the streams ended {ended_after:.1f} s after SIGTERM"
    assert exited_after < GRACEFUL_SECONDS / 2, f"the web exited {exited_after:.1f} s after SIGTERM"
    output = web.web.output()
    assert "ended 3 held streams" in output
    assert "Worker graceful timeout" not in output
    for visitor in visitors:
        assert f'"path": "/api/v1/public/conversations/{visitor.conversation_id}/stream"' in output
    # The stack's own web (another process) still serves.
    assert requests.get(stack.api("/utils/health-check/"), timeout=5).status_code == 200
