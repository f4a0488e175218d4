"""Invitations (a superuser creates a user without a password: a "new account" email with a
single-use, expiring link to set one), the superuser's test email, and the local-only
POST /private/users/ helper. Mail goes through a real SMTP server on localhost."""

import email
import email.policy
import re
from datetime import timedelta

import pytest

from backend.extensions import db
from backend.models import User
from tests.factories import auth_headers, make_user
from tests.helpers import build_app, login

LINK = re.compile(r'href="https://app\.example\.com/reset-password\?token=([^"&]+)"')


def _parsed(envelope):
    return email.message_from_bytes(envelope.content, policy=email.policy.default)


def _token_from(envelope) -> str:
    html = _parsed(envelope).get_body(preferencelist=("html",)).get_content()
    match = LINK.search(html)
    assert match, html
    return match.group(1)


def test_a_user_created_without_a_password_is_invited_to_set_one(client, smtp_inbox):
    admin = make_user(is_superuser=True)
    response = client.post(
        "/api/v1/users/",
        json={"email": "Invited@Example.com", "full_name": "Ines Invited"},
        headers=auth_headers(admin),
    )
    assert response.status_code == 201
    assert response.get_json()["email"] == "invited@example.com"

    [envelope] = smtp_inbox.after_sending()
    assert envelope.rcpt_tos == ["invited@example.com"]
    message = _parsed(envelope)
    assert "New account" in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "invited@example.com" in text and "Ines Invited" in text
    token = _token_from(envelope)

    # Nobody can log in before the password is chosen (there is none anyone knows).
    assert login(client, "invited@example.com", "").status_code in (400, 422)
    response = client.post("/api/v1/reset-password/", json={"token": token, "new_password": "chosen-by-ines"})
    assert response.status_code == 200
    assert login(client, "invited@example.com", "chosen-by-ines").status_code == 200
    # Single use.
    response = client.post("/api/v1/reset-password/", json={"token": token, "new_password": "another-pass"})
    assert response.status_code == 400 and response.get_json() == {"detail": "Invalid token"}


def test_the_invitation_link_expires(app, client, smtp_inbox, monkeypatch):
    monkeypatch.setitem(app.config, "EMAIL_RESET_TOKEN_EXPIRE", timedelta(seconds=-1))
    admin = make_user(is_superuser=True)
    assert (
        client.post(
            "/api/v1/users/", json={"email": "late@example.com"}, headers=auth_headers(admin)
        ).status_code
        == 201
    )
    token = _token_from(smtp_inbox.after_sending()[0])
    response = client.post("/api/v1/reset-password/", json={"token": token, "new_password": "too-late-now"})
    assert response.status_code == 400 and response.get_json() == {"detail": "Invalid token"}


def test_a_user_created_with_a_password_gets_no_invitation(client, smtp_inbox):
    admin = make_user(is_superuser=True)
    response = client.post(
        "/api/v1/users/",
        json={"email": "ready@example.com", "password": "long-enough"},
        headers=auth_headers(admin),
    )
    assert response.status_code == 201
    assert smtp_inbox.after_sending() == []
    assert login(client, "ready@example.com", "long-enough").status_code == 200


def test_only_superusers_create_users_and_a_short_password_is_still_422(client, smtp_inbox):
    owner = make_user()
    response = client.post("/api/v1/users/", json={"email": "x@example.com"}, headers=auth_headers(owner))
    assert response.status_code == 403
    admin = make_user(is_superuser=True)
    response = client.post(
        "/api/v1/users/", json={"email": "x@example.com", "password": "short"}, headers=auth_headers(admin)
    )
    assert response.status_code == 422 and "password" in response.get_json()["errors"]
    assert smtp_inbox.after_sending() == []


def test_test_email_is_sent_to_email_to(client, smtp_inbox):
    admin = make_user(is_superuser=True)
    response = client.post("/api/v1/utils/test-email/?email_to=ops@example.com", headers=auth_headers(admin))
    assert response.status_code == 201 and response.get_json() == {"message": "Test email sent"}
    [envelope] = smtp_inbox.after_sending()
    assert envelope.rcpt_tos == ["ops@example.com"] and "Test email" in _parsed(envelope)["Subject"]


def test_test_email_needs_a_superuser_and_an_address(client, smtp_inbox):
    owner = make_user()
    url = "/api/v1/utils/test-email/?email_to=ops@example.com"
    assert client.post(url).status_code == 401
    response = client.post(url, headers=auth_headers(owner))
    assert response.status_code == 403 and response.get_json() == {
        "detail": "The user doesn't have enough privileges"
    }
    admin = make_user(is_superuser=True)
    for bad in ("", "?email_to=not-an-address"):
        response = client.post(f"/api/v1/utils/test-email/{bad}", headers=auth_headers(admin))
        assert response.status_code == 422 and "email_to" in response.get_json()["errors"]
    assert smtp_inbox.after_sending() == []


def test_test_email_without_smtp_says_nothing_was_sent(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "SMTP_HOST", None)
    admin = make_user(is_superuser=True)
    response = client.post("/api/v1/utils/test-email/?email_to=ops@example.com", headers=auth_headers(admin))
    assert response.status_code == 201 and "nothing was sent" in response.get_json()["message"]


# --- POST /private/users/ (ENVIRONMENT=local only) -------------------------------------------


@pytest.fixture
def local_client(app):
    with build_app(app, ENVIRONMENT="local") as local, local.app_context():
        yield local.test_client()


def test_private_users_creates_a_user_in_local(local_client):
    response = local_client.post(
        "/api/v1/private/users/",
        json={"email": "dev@example.com", "full_name": "Dev", "password": "long-enough"},
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["email"] == "dev@example.com" and body["full_name"] == "Dev" and body["is_superuser"] is False
    assert login(local_client, "dev@example.com", "long-enough").status_code == 200
    # The seed's helper sends no password.
    response = local_client.post("/api/v1/private/users/", json={"email": "nopass@example.com"})
    assert response.status_code == 201
    assert db.session.query(User).filter_by(email="nopass@example.com").one().hashed_password
    response = local_client.post("/api/v1/private/users/", json={"email": "dev@example.com"})
    assert response.status_code == 400
    response = local_client.post("/api/v1/private/users/", json={"email": "nope", "is_superuser": True})
    assert response.status_code == 422 and "email" in response.get_json()["errors"]


@pytest.mark.parametrize("environment", ["test", "production", "staging"])
def test_private_users_is_404_outside_local(app, environment):
    overrides = {"ENVIRONMENT": environment}
    if environment != "test":
        overrides["SECRET_KEY"] = "a-deployment-key-that-is-long-and-random-0123456789"
        overrides["FIRST_SUPERUSER_PASSWORD"] = "a-strong-first-password"
    with build_app(app, **overrides) as other, other.app_context():
        response = other.test_client().post("/api/v1/private/users/", json={"email": "dev@example.com"})
        assert response.status_code == 404 and response.mimetype == "application/json"
        paths = other.test_client().get("/api/v1/openapi.json").get_json()["paths"]
        assert not [path for path in paths if path.startswith("/api/v1/private")]
