"""Emails are Celery tasks: run eagerly here, delivered to a real SMTP server on localhost
(aiosmtpd). A temporary refusal is retried, a permanent one is not, a dead mail server or an
unreachable broker never fails the request that caused the email."""

import logging

import pytest
from aiosmtpd.controller import Controller

from backend.services import email as email_service
from tests.factories import auth_headers, make_user
from tests.helpers import build_app, free_port

RECOVERY_MESSAGE = "If that email is registered, we sent a password recovery link"


def test_a_temporary_refusal_is_retried_and_the_retry_delivers(client, busy_smtp_inbox, caplog):
    make_user("retry@example.com")
    with caplog.at_level(logging.WARNING, logger="backend.tasks"):
        response = client.post("/api/v1/password-recovery/retry@example.com")
    assert response.status_code == 200 and response.get_json() == {"message": RECOVERY_MESSAGE}
    assert busy_smtp_inbox.refused == 1
    [envelope] = busy_smtp_inbox.after_sending()
    assert envelope.rcpt_tos == ["retry@example.com"]
    assert b"Password recovery" in envelope.content
    failures = [r for r in caplog.records if "failed (attempt 1)" in r.getMessage()]
    assert len(failures) == 1 and "451" in failures[0].getMessage()


def test_an_invitation_is_retried_too(client, busy_smtp_inbox):
    admin = make_user(is_superuser=True)
    response = client.post("/api/v1/users/", json={"email": "later@example.com"}, headers=auth_headers(admin))
    assert response.status_code == 201
    assert busy_smtp_inbox.refused == 1
    assert [m.rcpt_tos for m in busy_smtp_inbox.after_sending()] == [["later@example.com"]]


class _Refusing:
    """A mail server that refuses every message for good (554)."""

    def __init__(self):
        self.attempts = 0

    async def handle_DATA(self, server, session, envelope):
        self.attempts += 1
        return "554 5.7.1 Message rejected"


def test_a_permanent_refusal_is_not_retried(app, client, smtp_inbox, monkeypatch, caplog):
    refusing = _Refusing()
    port = free_port()
    controller = Controller(refusing, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        monkeypatch.setitem(app.config, "SMTP_PORT", port)
        make_user("rejected@example.com")
        with caplog.at_level(logging.ERROR, logger="backend.tasks"):
            response = client.post("/api/v1/password-recovery/rejected@example.com")
    finally:
        controller.stop()
    assert response.status_code == 200 and response.get_json() == {"message": RECOVERY_MESSAGE}
    assert refusing.attempts == 1
    assert any("for good" in r.getMessage() and "554" in r.getMessage() for r in caplog.records)


def test_a_dead_mail_server_is_tried_every_allowed_time_and_the_request_answers(
    app, client, smtp_inbox, monkeypatch, caplog
):
    monkeypatch.setitem(app.config, "SMTP_PORT", free_port())  # nothing listens there
    monkeypatch.setitem(app.config, "EMAIL_MAX_RETRIES", 2)
    make_user("unlucky@example.com")
    with caplog.at_level(logging.WARNING, logger="backend.tasks"):
        response = client.post("/api/v1/password-recovery/unlucky@example.com")
    assert response.status_code == 200 and response.get_json() == {"message": RECOVERY_MESSAGE}
    attempts = [
        r.getMessage()
        for r in caplog.records
        if r.name == "backend.tasks" and "failed (attempt" in r.getMessage()
    ]
    assert [a.split("(attempt ")[1][0] for a in attempts] == ["1", "2", "3"]
    assert smtp_inbox.after_sending() == []


@pytest.fixture
def brokerless(app):
    """An app whose Celery broker is a Redis port nothing listens on, with emails enabled."""
    with (
        build_app(
            app,
            CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=free_port(),
            EMAILS_FROM_EMAIL="noreply@example.com",
        ) as other,
        other.app_context(),
    ):
        yield other


def test_an_unreachable_broker_does_not_fail_the_request(brokerless, caplog):
    client = brokerless.test_client()
    make_user("stranded@example.com")
    admin = make_user(is_superuser=True)
    with caplog.at_level(logging.ERROR, logger="backend.services.email"):
        response = client.post("/api/v1/password-recovery/stranded@example.com")
        assert response.status_code == 200 and response.get_json() == {"message": RECOVERY_MESSAGE}
        response = client.post(
            "/api/v1/users/", json={"email": "new@example.com"}, headers=auth_headers(admin)
        )
        assert response.status_code == 201 and response.get_json()["email"] == "new@example.com"
        response = client.post(
            "/api/v1/utils/test-email/?email_to=ops@example.com", headers=auth_headers(admin)
        )
        assert response.status_code == 201 and response.get_json() == {"message": "Test email sent"}
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith("could not enqueue")]
    assert len(failures) == 3, failures
    assert "stranded@example.com" in failures[0] and "new@example.com" in failures[1]


def test_retry_delays_grow_exponentially_with_jitter_and_stay_bounded(app, monkeypatch):
    monkeypatch.setitem(app.config, "EMAIL_RETRY_BACKOFF_SECONDS", 2.0)
    monkeypatch.setitem(app.config, "EMAIL_RETRY_BACKOFF_MAX_SECONDS", 60.0)
    for retries, ceiling in [(0, 2.0), (1, 4.0), (3, 16.0), (5, 60.0), (40, 60.0), (10_000, 60.0)]:
        delays = {email_service.retry_delay(retries) for _ in range(200)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays), (retries, delays)
        assert len(delays) > 1  # jittered
