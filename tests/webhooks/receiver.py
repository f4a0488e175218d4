"""A real HTTP server that receives webhooks, for the tests, and an independent check of
their signatures (written from the README's description, not with the app's code)."""

import hashlib
import hmac
import http.server
import json
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Received:
    headers: dict
    body: bytes
    at: float

    @property
    def json(self) -> dict:
        return json.loads(self.body)


def signature_is_valid(secret: str, received: Received) -> bool:
    timestamp = received.headers["X-Webhook-Timestamp"]
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(received.headers["X-Webhook-Signature"], "v1=" + digest)


@dataclass
class Receiver:
    """Answers each POST with the next of `statuses` (then 200), after the next of `delays`
    (then `delay`) seconds; listens on `port` (any free one when 0)."""

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    delays: list[float] = field(default_factory=list)
    port: int = 0
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        owner = self
        self._lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner._lock:
                    owner.received.append(Received(dict(self.headers), body, time.monotonic()))
                    status = owner.statuses.pop(0) if owner.statuses else 200
                    delay = owner.delays.pop(0) if owner.delays else owner.delay
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return list(self.received)
            time.sleep(0.05)
        raise TimeoutError(f"received {len(self.received)} of {count} webhooks")

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in list(self.received) if r.json["type"] == event_type]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
