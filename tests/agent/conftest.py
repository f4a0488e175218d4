"""Fixtures of the agent tests."""

import pytest

from tests.fake_groq import FakeGroq


@pytest.fixture
def groq(app, monkeypatch):
    server = FakeGroq().start()
    monkeypatch.setitem(app.config, "GROQ_BASE_URL", server.base_url)
    monkeypatch.setitem(app.config, "GROQ_API_KEY", "test-key")
    monkeypatch.setitem(app.config, "GROQ_MAX_RETRIES", 1)
    monkeypatch.setitem(app.config, "GROQ_RETRY_BACKOFF_SECONDS", 0)
    monkeypatch.setitem(app.config, "GROQ_TIMEOUT_SECONDS", 10.0)
    yield server
    server.stop()
