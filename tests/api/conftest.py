"""Fixtures of the API tests."""

import time

import pytest
from aiosmtpd.controller import Controller

import backend.tasks  # noqa: F401  (registers the tasks, as celery_app.py does for the worker)
from tests.helpers import free_port


class _Inbox:
    """A mail server's handler. `refusals` temporary (4xx) answers are given to the first
    messages before any is accepted, as a busy or greylisting server does."""

    def __init__(self, refusals: int = 0):
        self.messages = []
        self.refusals = refusals
        self.refused = 0

    async def handle_DATA(self, server, session, envelope):
        if self.refused < self.refusals:
            self.refused += 1
            return "451 4.3.0 Temporary failure, try again later"
        self.messages.append(envelope)
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 10.0) -> list:
        """Waits up to `timeout` for `count` messages to land."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages

    def after_sending(self) -> list:
        """The messages once every mail a request started is done: the email tasks run
        eagerly (retries included) before the request answers."""
        return self.messages


def serve_smtp(app, monkeypatch, inbox: _Inbox):
    """Starts a real SMTP server on localhost with `inbox` as its handler and points the app
    at it, with Celery tasks run eagerly (CELERY_TASK_ALWAYS_EAGER) in this process."""
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    for key, value in {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": port,
        "SMTP_TLS": False,
        "SMTP_SSL": False,
        "SMTP_USER": None,
        "EMAILS_FROM_EMAIL": "noreply@example.com",
        "FRONTEND_HOST": "https://app.example.com",
        "CELERY_TASK_ALWAYS_EAGER": True,
    }.items():
        monkeypatch.setitem(app.config, key, value)
    # The Celery app read CELERY_TASK_ALWAYS_EAGER when it was built.
    monkeypatch.setitem(app.extensions["celery"].conf, "task_always_eager", True)
    return controller


@pytest.fixture
def smtp_inbox(app, monkeypatch):
    """A real SMTP server on localhost; the app is pointed at it for one test."""
    inbox = _Inbox()
    controller = serve_smtp(app, monkeypatch, inbox)
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def busy_smtp_inbox(app, monkeypatch):
    """A real SMTP server on localhost that answers the first message with a 451."""
    inbox = _Inbox(refusals=1)
    controller = serve_smtp(app, monkeypatch, inbox)
    try:
        yield inbox
    finally:
        controller.stop()
