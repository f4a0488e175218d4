"""Login, token checks and password recovery (FastAPI full-stack template behaviour)."""

import email
import email.policy
import re
import socket
import time
from datetime import timedelta

import jwt as pyjwt
import pytest
from flask_jwt_extended import create_access_token, decode_token

from backend.extensions import db
from backend.security import create_password_reset_token
from tests.factories import DEFAULT_PASSWORD, auth_headers, make_user
from tests.helpers import LOGIN, free_port, login

RECOVERY_MESSAGE = "If that email is registered, we sent a password recovery link"


def test_login_returns_a_bearer_token_for_that_user(client):
    user = make_user("owner@example.com")
    response = login(client, "owner@example.com", DEFAULT_PASSWORD)
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "bearer"
    me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.get_json()["id"] == str(user.id)


def test_access_token_lives_eight_days(client):
    make_user("eight@example.com")
    token = login(client, "eight@example.com", DEFAULT_PASSWORD).get_json()["access_token"]
    claims = decode_token(token)
    assert claims["exp"] - claims["iat"] == int(timedelta(days=8).total_seconds())


@pytest.mark.parametrize(
    "username,password",
    [
        ("owner@example.com", "wrong-password"),
        ("nobody@example.com", DEFAULT_PASSWORD),
        ("owner@example.com", ""),
    ],
)
def test_login_with_bad_credentials(client, username, password):
    make_user("owner@example.com")
    response = login(client, username, password)
    assert response.status_code == 400
    assert response.get_json() == {"detail": "Incorrect email or password"}


def test_login_of_inactive_user(client):
    make_user("sleeper@example.com", is_active=False)
    response = login(client, "sleeper@example.com", DEFAULT_PASSWORD)
    assert response.status_code == 400
    assert response.get_json() == {"detail": "Inactive user"}


def test_login_needs_form_fields(client):
    response = client.post(LOGIN, data={"username": "owner@example.com"})
    assert response.status_code == 422
    assert "password" in response.get_json()["errors"]


def test_login_ignores_the_other_oauth2_form_fields(client):
    make_user("oauth@example.com")
    form = {
        "username": "oauth@example.com",
        "password": DEFAULT_PASSWORD,
        "grant_type": "password",
        "scope": "",
    }
    assert client.post(LOGIN, data=form).status_code == 200


def test_test_token_returns_the_user(client):
    user = make_user("tt@example.com", full_name="Tee Tee")
    response = client.post("/api/v1/login/test-token", headers=auth_headers(user))
    assert response.status_code == 200
    body = response.get_json()
    assert body["email"] == "tt@example.com" and body["full_name"] == "Tee Tee"
    assert "hashed_password" not in body and "password" not in body


def test_test_token_without_token_is_401(client):
    assert client.post("/api/v1/login/test-token").status_code == 401


@pytest.mark.parametrize("header", ["Bearer not-a-jwt", "Bearer a.b.c", "Bearer "])
def test_malformed_token_is_403(client, header):
    response = client.post("/api/v1/login/test-token", headers={"Authorization": header})
    assert response.status_code in (401, 403)
    if header != "Bearer ":
        assert response.status_code == 403
        assert response.get_json() == {"detail": "Could not validate credentials"}


def test_expired_token_is_403(client):
    user = make_user()
    token = create_access_token(identity=str(user.id), expires_delta=timedelta(seconds=-10))
    response = client.post("/api/v1/login/test-token", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.get_json() == {"detail": "Could not validate credentials"}


def test_forged_token_is_403(client):
    user = make_user(is_superuser=True)
    genuine = decode_token(create_access_token(identity=str(user.id)))
    forged = pyjwt.encode(genuine, "another-key-that-is-long-enough-for-hs256!", algorithm="HS256")
    response = client.get("/api/v1/users/", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 403
    assert response.get_json() == {"detail": "Could not validate credentials"}


def test_token_of_a_deleted_user_is_404(client):
    user = make_user()
    headers = auth_headers(user)
    db.session.delete(user)
    db.session.commit()
    response = client.post("/api/v1/login/test-token", headers=headers)
    assert response.status_code == 404
    assert response.get_json() == {"detail": "User not found"}


def test_token_of_a_deactivated_user_is_400(client):
    user = make_user()
    headers = auth_headers(user)
    user.is_active = False
    db.session.commit()
    response = client.get("/api/v1/users/me", headers=headers)
    assert response.status_code == 400
    assert response.get_json() == {"detail": "Inactive user"}


def test_password_recovery_answers_the_same_for_unknown_emails(client):
    make_user("known@example.com")
    for address in ("known@example.com", "unknown@example.com"):
        response = client.post(f"/api/v1/password-recovery/{address}")
        assert response.status_code == 200
        assert response.get_json() == {"message": RECOVERY_MESSAGE}


def test_reset_password_with_a_bad_token(client):
    response = client.post(
        "/api/v1/reset-password/", json={"token": "garbage", "new_password": "new-password-1"}
    )
    assert response.status_code == 400
    assert response.get_json() == {"detail": "Invalid token"}


def test_reset_token_lives_48_hours_and_is_not_an_access_token(client):
    user = make_user("reset48@example.com")
    claims = pyjwt.decode(create_password_reset_token(user), options={"verify_signature": False})
    assert claims["exp"] - claims["nbf"] == 48 * 3600
    access = create_access_token(identity=str(user.id))
    response = client.post(
        "/api/v1/reset-password/", json={"token": access, "new_password": "new-password-1"}
    )
    assert response.status_code == 400 and response.get_json() == {"detail": "Invalid token"}


def test_expired_reset_token_is_invalid(app, client, monkeypatch):
    user = make_user("late@example.com")
    monkeypatch.setitem(app.config, "EMAIL_RESET_TOKEN_EXPIRE", timedelta(seconds=-5))
    token = create_password_reset_token(user)
    response = client.post("/api/v1/reset-password/", json={"token": token, "new_password": "new-password-1"})
    assert response.status_code == 400 and response.get_json() == {"detail": "Invalid token"}


def test_reset_token_for_a_vanished_or_inactive_account(client):
    ghost = make_user("ghost@example.com")
    token = create_password_reset_token(ghost)
    db.session.delete(ghost)
    db.session.commit()
    response = client.post("/api/v1/reset-password/", json={"token": token, "new_password": "new-password-1"})
    assert response.status_code == 400 and response.get_json() == {"detail": "Invalid token"}
    token = create_password_reset_token(make_user("inactive@example.com", is_active=False))
    response = client.post("/api/v1/reset-password/", json={"token": token, "new_password": "new-password-1"})
    assert response.status_code == 400 and response.get_json() == {"detail": "Inactive user"}


@pytest.mark.parametrize("new_password", ["short", "x" * 129])
def test_reset_password_enforces_length(client, new_password):
    token = create_password_reset_token(make_user())
    response = client.post("/api/v1/reset-password/", json={"token": token, "new_password": new_password})
    assert response.status_code == 422
    assert "new_password" in response.get_json()["errors"]


def test_password_recovery_end_to_end_through_smtp(client, smtp_inbox):
    make_user("forgetful@example.com", full_name="Forgetful Fran")
    response = client.post("/api/v1/password-recovery/forgetful@example.com")
    assert response.status_code == 200 and response.get_json() == {"message": RECOVERY_MESSAGE}

    assert len(smtp_inbox.wait_for(1)) == 1
    envelope = smtp_inbox.messages[0]
    assert envelope.rcpt_tos == ["forgetful@example.com"]
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert "Password recovery" in message["Subject"]
    html = message.get_body(preferencelist=("html",)).get_content()
    match = re.search(r'href="https://app\.example\.com/reset-password\?token=([^"&]+)"', html)
    assert match, html
    token = match.group(1)

    response = client.post("/api/v1/reset-password/", json={"token": token, "new_password": "brand-new-pass"})
    assert response.status_code == 200
    assert response.get_json() == {"message": "Password updated successfully"}
    assert login(client, "forgetful@example.com", DEFAULT_PASSWORD).status_code == 400
    assert login(client, "forgetful@example.com", "brand-new-pass").status_code == 200

    # The link works once.
    response = client.post("/api/v1/reset-password/", json={"token": token, "new_password": "third-password"})
    assert response.status_code == 400 and response.get_json() == {"detail": "Invalid token"}
    assert login(client, "forgetful@example.com", "brand-new-pass").status_code == 200


def test_password_recovery_sends_nothing_for_unknown_email(client, smtp_inbox):
    make_user("known@example.com")
    response = client.post("/api/v1/password-recovery/stranger@example.com")
    assert response.status_code == 200 and response.get_json() == {"message": RECOVERY_MESSAGE}
    assert smtp_inbox.after_sending() == []
    # A known address asked afterwards is the only one that gets mail.
    client.post("/api/v1/password-recovery/known@example.com")
    assert [m.rcpt_tos for m in smtp_inbox.after_sending()] == [["known@example.com"]]


def test_password_recovery_does_not_wait_for_a_slow_mail_server(app, client, monkeypatch):
    """The answer must come at once for known and unknown addresses alike (no timing oracle)."""
    make_user("known@example.com")
    with socket.socket() as silent:
        # Accepts connections but never greets: an SMTP client would wait its whole timeout.
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setitem(app.config, "SMTP_HOST", "127.0.0.1")
        monkeypatch.setitem(app.config, "SMTP_PORT", silent.getsockname()[1])
        monkeypatch.setitem(app.config, "SMTP_TLS", False)
        started = time.monotonic()
        response = client.post("/api/v1/password-recovery/known@example.com")
        assert time.monotonic() - started < 2
        assert response.status_code == 200 and response.get_json() == {"message": RECOVERY_MESSAGE}


def test_password_recovery_survives_a_dead_smtp_server(app, client, monkeypatch):
    make_user("unlucky@example.com")
    monkeypatch.setitem(app.config, "SMTP_HOST", "127.0.0.1")
    monkeypatch.setitem(app.config, "SMTP_PORT", free_port())
    monkeypatch.setitem(app.config, "SMTP_TLS", False)
    # The email task runs (and fails, retries included) in the request.
    monkeypatch.setitem(app.extensions["celery"].conf, "task_always_eager", True)
    response = client.post("/api/v1/password-recovery/unlucky@example.com")
    assert response.status_code == 200 and response.get_json() == {"message": RECOVERY_MESSAGE}
