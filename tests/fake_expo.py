"""A fake Expo push server for the tests: a real HTTP server in a thread that speaks Expo's
wire format (POST a JSON array of messages; 200 `{"data": [ticket, ...]}` in the same order, or
`{"errors": [...]}` with a 4xx/5xx), records every request and answers as scripted:

- `unregistered`: tokens answered with a `DeviceNotRegistered` ticket;
- `statuses`: the next requests' HTTP statuses (a 5xx carries Expo's `errors` body);
- `delays`: the next requests' delays before answering (a hanging Expo), then `delay`.
"""

import gzip
import http.server
import json
import threading
import time
from dataclasses import dataclass, field


@dataclass
class PushRequest:
    headers: dict
    messages: list
    at: float

    @property
    def tokens(self) -> list[str]:
        return [m["to"] for m in self.messages]


@dataclass
class FakeExpo:
    unregistered: set[str] = field(default_factory=set)
    statuses: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    delay: float = 0.0
    port: int = 0
    requests: list[PushRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        owner = self
        self._lock = threading.Lock()
        self._ticket = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                try:
                    messages = json.loads(raw)
                except ValueError:
                    messages = None
                with owner._lock:
                    owner.requests.append(PushRequest(dict(self.headers), messages, time.monotonic()))
                    status = owner.statuses.pop(0) if owner.statuses else 200
                    delay = owner.delays.pop(0) if owner.delays else owner.delay
                time.sleep(delay)
                if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                    status, body = 400, {"errors": [{"code": "VALIDATION_ERROR", "message": "not an array"}]}
                elif status != 200:
                    body = {
                        "errors": [{"code": "INTERNAL_SERVER_ERROR", "message": "An unknown error occurred."}]
                    }
                else:
                    body = {"data": [owner._ticket_for(m.get("to")) for m in messages]}
                payload = json.dumps(body).encode()
                if "gzip" in (self.headers.get("Accept-Encoding") or ""):
                    payload = gzip.compress(payload)
                    self.send_response(status)
                    self.send_header("Content-Encoding", "gzip")
                else:
                    self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (a timeout, a killed worker)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/--/api/v2/push/send"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _ticket_for(self, token) -> dict:
        if token in self.unregistered:
            return {
                "status": "error",
                "message": f'"{token}" is not a registered push notification recipient',
                "details": {"error": "DeviceNotRegistered", "expoPushToken": token},
            }
        self._ticket += 1
        return {"status": "ok", "id": f"ticket-{self._ticket:06d}"}

    def wait_for(self, count: int, timeout: float = 30) -> list[PushRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= count:
                return list(self.requests)
            time.sleep(0.05)
        raise TimeoutError(f"received {len(self.requests)} of {count} push requests")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
