"""Fixtures of the API tests."""

import threading
import time

import pytest
from aiosmtpd.controller import Controller

from tests.helpers import free_port


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 10.0) -> list:
        """Mail leaves in the background, after the response: wait for it to land."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages

    def after_sending(self) -> list:
        """The messages once every mail a request started (a "send-email" thread) is done."""
        for thread in threading.enumerate():
            if thread.name == "send-email":
                thread.join(10)
                assert not thread.is_alive(), "a mail was still being sent after 10 s"
        return self.messages


@pytest.fixture
def smtp_inbox(app, monkeypatch):
    """A real SMTP server on localhost; the app is pointed at it for one test."""
    inbox = _Inbox()
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
    }.items():
        monkeypatch.setitem(app.config, key, value)
    try:
        yield inbox
    finally:
        controller.stop()
