"""Helpers shared by test modules (test modules never import each other)."""

import contextlib
import socket

from flask import Flask
from sqlalchemy import event

from backend import create_app
from backend.config import TestConfig
from backend.extensions import db, limiter

LOGIN = "/api/v1/login/access-token"


def login(client, username: str, password: str):
    """The OAuth2 password form of the login route."""
    return client.post(LOGIN, data={"username": username, "password": password})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def build_app(app: Flask, **overrides):
    """A second app built from TestConfig plus `overrides`.

    Its Api (OpenAPI document) and SSE hub are its own; the hub is stopped afterwards.
    create_app() rebinds process-wide extension state (the limiter's switch, Celery's
    default app); that is put back to the session `app` afterwards, so
    later tests see what they expect.
    """
    other = create_app(type("OverriddenConfig", (TestConfig,), overrides))
    try:
        yield other
    finally:
        with other.app_context():
            db.engine.dispose()
        other.extensions["sse_hub"].stop()
        limiter.init_app(app)
        app.extensions["celery"].set_default()


def assert_error(response, status: int, detail: str | None = None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body.get("detail"), str) and body["detail"]
    if detail is not None:
        assert body["detail"] == detail
    return body


def add_stream_entry(client, key: str, fields: dict) -> str:
    """Appends one entry to a stream the way the app's writers do (announced to the SSE
    hubs), and returns its id."""
    from backend.streams import append_entries

    ids, _ = append_entries(client, key, [fields], maxlen=100_000)
    return ids[0]


@contextlib.contextmanager
def count_statements():
    """The SQL statements the app's engine sends within the block, as sent."""
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
