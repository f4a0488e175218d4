"""A visitor, as the e2e tests drive one: REST calls plus the event stream."""

import time
import uuid

import requests

from backend.extensions import redis_client
from backend.streams import stream_key
from tests.e2e.harness import SSEClient
from tests.factories import DEFAULT_PASSWORD
from tests.helpers import add_stream_entry


class Visitor:
    def __init__(self, stack, handle: str, name: str = "Ana"):
        self.stack = stack
        response = requests.post(
            stack.api("/public/conversations"),
            json={"workspace_handle": handle, "visitor_name": name},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        self.conversation_id = body["conversation_id"]
        self.token = body["visitor_token"]

    @property
    def headers(self) -> dict:
        return {"X-Visitor-Token": self.token}

    def url(self, suffix: str = "") -> str:
        return self.stack.api(f"/public/conversations/{self.conversation_id}{suffix}")

    def post(self, content: str, idempotency_key: str | None = None) -> requests.Response:
        body = {"content": content, "idempotency_key": idempotency_key or str(uuid.uuid4())}
        return requests.post(self.url("/messages"), json=body, headers=self.headers, timeout=10)

    def send(self, content: str) -> dict:
        response = self.post(content)
        assert response.status_code == 201, response.text
        return response.json()

    def stream(self, last_event_id: str | None = None, header: bool = False, timeout=15) -> SSEClient:
        params = {"visitor_token": self.token}
        headers = {}
        if last_event_id and header:
            headers["Last-Event-ID"] = last_event_id
        elif last_event_id:
            params["last_event_id"] = last_event_id
        return SSEClient(self.url("/stream"), params=params, headers=headers, timeout=timeout)

    def drain(self, stream: SSEClient) -> list:
        """What `stream` delivers before an entry appended to the conversation's stream now.

        The stream is delivered in order, so once that entry arrives, everything written
        before it has arrived too: nothing more can come from what already happened."""
        marker = add_stream_entry(
            redis_client(), stream_key(self.conversation_id), {"e": "test-marker", "d": "{}"}
        )
        return stream.events_until(lambda e: e.id == marker)[:-1]

    def messages(self, **params) -> list[dict]:
        response = requests.get(self.url("/messages"), params=params, headers=self.headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["messages"]

    def run(self, run_id: str) -> dict:
        response = requests.get(self.url(f"/runs/{run_id}"), headers=self.headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def cancel(self, run_id: str) -> requests.Response:
        return requests.post(self.url(f"/runs/{run_id}/cancel"), headers=self.headers, timeout=10)

    def wait_run(self, run_id: str, statuses=("completed", "failed", "cancelled"), timeout=30) -> dict:
        """Polls the run until its status is one of `statuses`."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in statuses:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run['status']} after {timeout}s")
            time.sleep(0.1)


def run_events(events, run_id: str) -> list:
    return [e for e in events if isinstance(e.data, dict) and e.data.get("run_id") == run_id]


def is_end_of(run_id: str):
    return lambda e: e.event == "message_end" and e.data["run_id"] == run_id


def text_of(events) -> str:
    return "".join(e.data["text_chunk"] for e in events if e.event == "delta")


def after_deltas(n: int):
    """A predicate true at the n-th delta event."""
    seen = [0]

    def predicate(event) -> bool:
        if event.event == "delta":
            seen[0] += 1
        return seen[0] >= n

    return predicate


def names(events) -> list[str]:
    return [e.event for e in events]


def owner_headers(stack, user, password: str = DEFAULT_PASSWORD) -> dict:
    """A bearer header from the stack's own login route (its web has its own secret key)."""
    login = requests.post(
        stack.api("/login/access-token"), data={"username": user.email, "password": password}, timeout=10
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}
