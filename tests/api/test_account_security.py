"""Accounts that stay what they are: tokens end with the password they were issued under,
reset links are typed and single use, superusers cannot lock the system out, and one
address (however it is typed) is one account."""

import time

import jwt as pyjwt
import pytest
from flask_jwt_extended import create_access_token
from sqlalchemy import func, select

from backend.errors import Conflict
from backend.extensions import db
from backend.models import User
from backend.security import create_password_reset_token
from backend.services import users as user_service
from tests.concurrency import run_concurrently
from tests.factories import DEFAULT_PASSWORD, auth_headers, make_user
from tests.helpers import login

REVOKED = {"detail": "Could not validate credentials"}
ME = "/api/v1/users/me"
RESET = "/api/v1/reset-password/"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def session(client, email: str, password: str = DEFAULT_PASSWORD) -> dict:
    response = login(client, email, password)
    assert response.status_code == 200, response.get_json()
    return bearer(response.get_json()["access_token"])


# --- access tokens end with the password ---------------------------------------------


def test_changing_the_own_password_revokes_every_earlier_token(client):
    make_user("owner@example.com")
    laptop, phone = session(client, "owner@example.com"), session(client, "owner@example.com")
    response = client.patch(
        f"{ME}/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "a-brand-new-password"},
        headers=laptop,
    )
    assert response.status_code == 200
    assert response.get_json() == {"message": "Password updated successfully"}
    for old in (laptop, phone):
        response = client.get(ME, headers=old)
        assert response.status_code == 403 and response.get_json() == REVOKED
    assert (
        client.get(ME, headers=session(client, "owner@example.com", "a-brand-new-password")).status_code
        == 200
    )


def test_the_session_that_changed_its_password_gets_a_fresh_token(client):
    make_user("owner@example.com")
    old = session(client, "owner@example.com")
    response = client.patch(
        f"{ME}/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "a-brand-new-password"},
        headers=old,
    )
    assert "X-Access-Token" in response.headers["Access-Control-Expose-Headers"]
    fresh = bearer(response.headers["X-Access-Token"])
    assert client.get(ME, headers=fresh).status_code == 200
    assert client.get(ME, headers=old).get_json() == REVOKED
    # A failed attempt neither revokes anything nor hands out a token.
    response = client.patch(
        f"{ME}/password", json={"current_password": "wrong-password", "new_password": "x" * 12}, headers=fresh
    )
    assert response.status_code == 400 and "X-Access-Token" not in response.headers
    assert client.get(ME, headers=fresh).status_code == 200


def test_a_password_set_by_a_superuser_revokes_that_users_tokens(client):
    admin = make_user(is_superuser=True)
    user = make_user("target@example.com")
    admin_headers, user_headers = auth_headers(admin), session(client, "target@example.com")
    response = client.patch(
        f"/api/v1/users/{user.id}", json={"password": "set-by-the-admin"}, headers=admin_headers
    )
    assert response.status_code == 200 and "X-Access-Token" not in response.headers
    assert client.get(ME, headers=user_headers).get_json() == REVOKED
    assert client.get(ME, headers=admin_headers).status_code == 200
    # Other profile changes leave the tokens alone.
    still = session(client, "target@example.com", "set-by-the-admin")
    client.patch(f"/api/v1/users/{user.id}", json={"full_name": "Renamed"}, headers=admin_headers)
    assert client.get(ME, headers=still).status_code == 200


def test_a_password_reset_revokes_earlier_access_tokens(client):
    user = make_user("reset@example.com")
    headers = session(client, "reset@example.com")
    response = client.post(
        RESET, json={"token": create_password_reset_token(user), "new_password": "after-reset"}
    )
    assert response.status_code == 200
    assert client.get(ME, headers=headers).get_json() == REVOKED


def test_an_access_token_without_a_version_is_refused(client):
    user = make_user()
    token = create_access_token(identity=str(user.id))
    response = client.get(ME, headers=bearer(token))
    assert response.status_code == 403 and response.get_json() == REVOKED


# --- reset tokens: typed, expiring, single use -----------------------------------------


def test_a_reset_token_is_not_an_access_token(client):
    user = make_user(is_superuser=True)
    token = create_password_reset_token(user)
    for path in (ME, "/api/v1/users/"):
        response = client.get(path, headers=bearer(token))
        assert response.status_code == 403 and response.get_json() == REVOKED


def test_a_reset_token_without_expiry_is_invalid(app, client):
    user = make_user()
    claims = pyjwt.decode(create_password_reset_token(user), options={"verify_signature": False})
    del claims["exp"]
    token = pyjwt.encode(claims, app.config["SECRET_KEY"], algorithm="HS256")
    response = client.post(RESET, json={"token": token, "new_password": "new-password-1"})
    assert response.status_code == 400 and response.get_json() == {"detail": "Invalid token"}


def test_using_a_reset_link_ends_every_other_outstanding_link(client):
    user = make_user("twice@example.com")
    first = create_password_reset_token(user)
    time.sleep(1.01)  # a second email, a different token
    second = create_password_reset_token(user)
    assert first != second
    assert client.post(RESET, json={"token": second, "new_password": "from-the-second"}).status_code == 200
    for token in (first, second):
        response = client.post(RESET, json={"token": token, "new_password": "another-one"})
        assert response.status_code == 400 and response.get_json() == {"detail": "Invalid token"}
    assert login(client, "twice@example.com", "from-the-second").status_code == 200


def test_a_password_change_ends_outstanding_reset_links(client):
    user = make_user("changer@example.com")
    token = create_password_reset_token(user)
    client.patch(
        f"{ME}/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "changed-meanwhile"},
        headers=auth_headers(user),
    )
    response = client.post(RESET, json={"token": token, "new_password": "from-an-old-link"})
    assert response.status_code == 400 and response.get_json() == {"detail": "Invalid token"}


def test_one_reset_link_used_twice_at_once_works_once(app):
    user = make_user("race@example.com")
    token = create_password_reset_token(user)
    passwords = [f"concurrent-{i}-password" for i in range(4)]
    calls = [lambda c, p=p: c.post(RESET, json={"token": token, "new_password": p}) for p in passwords]
    statuses = [r.status_code for r in run_concurrently(app, calls)]
    assert sorted(statuses) == [200, 400, 400, 400]
    winner = passwords[statuses.index(200)]
    db.session.expire_all()  # the threads changed the row behind this session's back
    assert login(app.test_client(), "race@example.com", winner).status_code == 200


# --- superusers cannot lock the system out --------------------------------------------


@pytest.mark.parametrize("change", [{"is_superuser": False}, {"is_active": False}])
def test_a_superuser_cannot_demote_or_deactivate_itself(client, change):
    admin = make_user(is_superuser=True)
    make_user(is_superuser=True)  # not the last one: the own-account rule alone refuses
    response = client.patch(f"/api/v1/users/{admin.id}", json=change, headers=auth_headers(admin))
    assert response.status_code == 403
    assert response.get_json() == {"detail": "Super users are not allowed to demote or deactivate themselves"}
    db.session.expire_all()
    assert admin.is_superuser and admin.is_active
    response = client.delete(f"/api/v1/users/{admin.id}", headers=auth_headers(admin))
    assert response.status_code == 403
    assert response.get_json() == {"detail": "Super users are not allowed to delete themselves"}


def test_a_superuser_may_demote_another_superuser(client):
    admin, other = make_user(is_superuser=True), make_user(is_superuser=True)
    response = client.patch(
        f"/api/v1/users/{other.id}", json={"is_superuser": False}, headers=auth_headers(admin)
    )
    assert response.status_code == 200 and response.get_json()["is_superuser"] is False


@pytest.mark.parametrize("change", [{"is_superuser": False}, {"is_active": False}, None])
def test_the_last_active_superuser_stays(change):
    admin = make_user(is_superuser=True)
    make_user(is_superuser=True, is_active=False)  # an inactive one does not count
    acting = make_user()
    with pytest.raises(Conflict, match="The last active superuser cannot be demoted, deactivated or deleted"):
        if change is None:
            user_service.delete_user(admin, acting_user=acting)
        else:
            user_service.update_user(admin, change, acting_user=acting)
    db.session.expire_all()
    assert db.session.get(User, admin.id).is_superuser


def _active_superusers() -> int:
    db.session.expire_all()
    return db.session.scalar(
        select(func.count()).select_from(User).where(User.is_superuser.is_(True), User.is_active.is_(True))
    )


@pytest.mark.parametrize("change", [{"is_superuser": False}, {"is_active": False}, None])
def test_two_superusers_removing_each_other_at_once_leave_one(app, change):
    for _ in range(3):
        first, second = make_user(is_superuser=True), make_user(is_superuser=True)
        pairs = [(first, second), (second, first)]

        def call(actor, target):
            path = f"/api/v1/users/{target.id}"
            if change is None:
                return lambda c: c.delete(path, headers=auth_headers(actor))
            return lambda c: c.patch(path, json=change, headers=auth_headers(actor))

        statuses = sorted(r.status_code for r in run_concurrently(app, [call(*p) for p in pairs]))
        assert statuses[0] == 200 and statuses[1] in (400, 403, 404, 409), statuses
        assert _active_superusers() == 1
        db.session.execute(User.__table__.delete())
        db.session.commit()


# --- one account per address ------------------------------------------------------------


@pytest.mark.parametrize(
    "variant", ["DEMO@example.com", "demo@EXAMPLE.com", "ｄｅｍｏ@example.com", " Demo@Example.COM "]
)
def test_an_address_typed_differently_is_the_same_account(client, variant):
    demo = make_user("demo@example.com")
    response = client.post("/api/v1/users/signup", json={"email": variant, "password": "another-password"})
    assert response.status_code == 400
    assert response.get_json() == {"detail": "The user with this email already exists in the system"}
    response = login(client, variant, DEFAULT_PASSWORD)
    assert response.status_code == 200
    me = client.get(ME, headers=bearer(response.get_json()["access_token"]))
    assert me.get_json()["id"] == str(demo.id)


def test_addresses_are_stored_normalised_on_every_path(client):
    response = client.post(
        "/api/v1/users/signup", json={"email": "Ｊane.Doe@Example.COM", "password": "pass-word-1"}
    )
    assert response.status_code == 201 and response.get_json()["email"] == "jane.doe@example.com"
    admin = make_user(is_superuser=True)
    response = client.post(
        "/api/v1/users/",
        json={"email": "NEW@Example.com", "password": "pass-word-2"},
        headers=auth_headers(admin),
    )
    assert response.status_code == 201 and response.get_json()["email"] == "new@example.com"
    user = make_user("mover@example.com")
    response = client.patch(ME, json={"email": "Moved@EXAMPLE.com"}, headers=auth_headers(user))
    assert response.status_code == 200 and response.get_json()["email"] == "moved@example.com"
    response = client.patch(ME, json={"email": "NEW@example.com"}, headers=auth_headers(user))
    assert response.status_code == 409 and response.get_json() == {
        "detail": "User with this email already exists"
    }
    response = client.patch(
        f"/api/v1/users/{user.id}", json={"email": "JANE.DOE@example.com"}, headers=auth_headers(admin)
    )
    assert response.status_code == 409


@pytest.mark.parametrize(
    "address",
    [
        "\u0430dmin@example.com",  # Cyrillic a, then Latin
        "admin@ex\u0430mple.com",  # Cyrillic a inside a Latin domain label
        "admin@xn--exmple-4nf.com",  # the same, as punycode
        "p\u0430ypal@example.com",
        "\u03b1dmin@example.com",  # Greek alpha
    ],
)
def test_addresses_mixing_alphabets_are_refused(client, address):
    make_user("admin@example.com")
    response = client.post("/api/v1/users/signup", json={"email": address, "password": "pass-word-1"})
    assert response.status_code == 422
    assert "mixes alphabets" in response.get_json()["errors"]["email"][0]
    response = client.patch(ME, json={"email": address}, headers=auth_headers(make_user()))
    assert response.status_code == 422 and "email" in response.get_json()["errors"]


@pytest.mark.parametrize(
    "address", ["иван@пример.рф", "山田たろう@example.jp", "jöhn@müller.de", "ana@пример.com"]
)
def test_addresses_in_one_alphabet_per_part_are_accepted(client, address):
    response = client.post("/api/v1/users/signup", json={"email": address, "password": "pass-word-1"})
    assert response.status_code == 201, response.get_json()


def test_password_recovery_finds_the_account_however_it_is_typed(client, smtp_inbox):  # noqa: F811
    make_user("forgetful@example.com")
    response = client.post("/api/v1/password-recovery/FORGETFUL@Example.com")
    assert response.status_code == 200
    assert [m.rcpt_tos for m in smtp_inbox.wait_for(1)] == [["forgetful@example.com"]]


# --- the first superuser ---------------------------------------------------------------


def _create_superuser(app, monkeypatch, email: str):
    monkeypatch.setitem(app.config, "FIRST_SUPERUSER", email)
    monkeypatch.setitem(app.config, "FIRST_SUPERUSER_PASSWORD", "boss-password")
    return app.test_cli_runner().invoke(args=["create-superuser"])


def test_create_superuser_normalises_the_address(app, monkeypatch):
    first = _create_superuser(app, monkeypatch, "Boss@Example.com")
    assert first.exit_code == 0 and "Created superuser boss@example.com" in first.output
    again = _create_superuser(app, monkeypatch, "BOSS@example.com")
    assert again.exit_code == 0 and "Kept existing superuser boss@example.com" in again.output
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_create_superuser_never_promotes_an_existing_ordinary_account(app, monkeypatch):
    squatter = make_user("boss@example.com")
    result = _create_superuser(app, monkeypatch, "Boss@example.com")
    assert result.exit_code != 0
    assert "Kept existing superuser" not in result.output
    assert "boss@example.com belongs to an existing account that is not a superuser" in result.output
    db.session.expire_all()
    assert not db.session.get(User, squatter.id).is_superuser


def test_create_superuser_says_when_the_superuser_is_inactive(app, monkeypatch):
    make_user("boss@example.com", is_superuser=True, is_active=False)
    result = _create_superuser(app, monkeypatch, "boss@example.com")
    assert result.exit_code == 0 and "(inactive: it cannot log in)" in result.output


def test_create_superuser_refuses_a_mixed_alphabet_address(app, monkeypatch):
    result = _create_superuser(app, monkeypatch, "\u0430dmin@example.com")
    assert result.exit_code != 0 and "mixes alphabets" in result.output
    assert db.session.scalar(select(func.count()).select_from(User)) == 0
