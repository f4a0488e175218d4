"""Users API (FastAPI full-stack template behaviour) and profile fields."""

import uuid

import pytest
from sqlalchemy import func, select

from backend.extensions import db
from backend.models import (
    AgentRun,
    Conversation,
    ConversationMessage,
    SchedulingConnector,
    User,
    Workspace,
    WorkspaceService,
)
from tests.factories import DEFAULT_PASSWORD, auth_headers, make_user

PUBLIC_FIELDS = {
    "id",
    "email",
    "full_name",
    "is_active",
    "is_superuser",
    "business_name",
    "tagline",
    "bio",
    "phone",
    "website",
    "social_links",
    "setup_completed",
    "name",
    "about",
    "avatar_url",
    "profile_type",
    "faqs",
}
NO_PRIVILEGES = {"detail": "The user doesn't have enough privileges"}


def login(client, username, password):
    return client.post("/api/v1/login/access-token", data={"username": username, "password": password})


# --- signup -----------------------------------------------------------------


def test_signup_creates_an_account_that_can_log_in(client):
    response = client.post(
        "/api/v1/users/signup",
        json={"email": "new@example.com", "password": "long-enough", "full_name": "New Person", "x": 1},
    )
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == PUBLIC_FIELDS
    assert body["email"] == "new@example.com" and body["full_name"] == "New Person"
    assert body["is_active"] is True and body["is_superuser"] is False
    assert body["social_links"] == {} and body["setup_completed"] is False
    uuid.UUID(body["id"])
    assert login(client, "new@example.com", "long-enough").status_code == 200


def test_signup_cannot_make_a_superuser(client):
    response = client.post(
        "/api/v1/users/signup",
        json={"email": "sneaky@example.com", "password": "long-enough", "is_superuser": True},
    )
    assert response.status_code == 201 and response.get_json()["is_superuser"] is False


def test_signup_duplicate_email(client):
    make_user("dup@example.com")
    response = client.post(
        "/api/v1/users/signup", json={"email": "dup@example.com", "password": "long-enough"}
    )
    assert response.status_code == 400
    assert response.get_json() == {"detail": "The user with this email already exists in the system"}


@pytest.mark.parametrize("password", ["", "seven77", "x" * 129])
def test_signup_password_length(client, password):
    response = client.post("/api/v1/users/signup", json={"email": "pw@example.com", "password": password})
    assert response.status_code == 422
    assert "password" in response.get_json()["errors"]


@pytest.mark.parametrize("password", ["eight888", "x" * 128])
def test_signup_password_length_bounds_accepted(client, password):
    response = client.post("/api/v1/users/signup", json={"email": "pw@example.com", "password": password})
    assert response.status_code == 201


def test_signup_rejects_bad_email(client):
    response = client.post("/api/v1/users/signup", json={"email": "nope", "password": "long-enough"})
    assert response.status_code == 422 and "email" in response.get_json()["errors"]


# --- /users/me ------------------------------------------------------------------


def test_read_me_never_returns_the_hash(client):
    user = make_user("me@example.com")
    body = client.get("/api/v1/users/me", headers=auth_headers(user)).get_json()
    assert set(body) == PUBLIC_FIELDS
    assert user.hashed_password not in str(body)


def test_profile_fields_round_trip(client):
    user = make_user("profile@example.com")
    profile = {
        "full_name": "Dana Stylist",
        "business_name": "Dana's Salon",
        "tagline": "Cuts that last",
        "bio": "Twenty years of hair.\nBook online.",
        "phone": "+1 555 0100",
        "website": "https://dana.example.com",
        "social_links": {"instagram": "https://instagram.com/dana", "tiktok": "https://tiktok.com/@dana"},
        "setup_completed": True,
    }
    response = client.patch("/api/v1/users/me", json=profile, headers=auth_headers(user))
    assert response.status_code == 200
    assert {k: response.get_json()[k] for k in profile} == profile
    again = client.get("/api/v1/users/me", headers=auth_headers(user)).get_json()
    assert {k: again[k] for k in profile} == profile

    # A partial update leaves the rest alone; null and "" clear.
    response = client.patch(
        "/api/v1/users/me",
        json={"tagline": None, "website": "", "social_links": None},
        headers=auth_headers(user),
    )
    body = response.get_json()
    assert body["tagline"] is None and body["website"] is None and body["social_links"] == {}
    assert body["business_name"] == "Dana's Salon" and body["setup_completed"] is True


@pytest.mark.parametrize(
    "patch,field",
    [
        ({"social_links": ["https://x.com/a"]}, "social_links"),
        ({"social_links": {"x": "not a url"}}, "social_links"),
        ({"social_links": {"x": "javascript:alert(1)"}}, "social_links"),
        ({"website": "ftp://example.com"}, "website"),
        ({"phone": "1" * 65}, "phone"),
        ({"business_name": "b" * 256}, "business_name"),
        ({"full_name": 12}, "full_name"),
        ({"setup_completed": "maybe"}, "setup_completed"),
        ({"email": "not-an-email"}, "email"),
        ({"social_links": {f"k{i}": f"https://x.com/{i}" for i in range(21)}}, "social_links"),
    ],
)
def test_profile_validation(client, patch, field):
    user = make_user()
    response = client.patch("/api/v1/users/me", json=patch, headers=auth_headers(user))
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


def test_user_cannot_promote_itself(client):
    user = make_user()
    response = client.patch(
        "/api/v1/users/me", json={"is_superuser": True, "is_active": False}, headers=auth_headers(user)
    )
    assert response.status_code == 200
    db.session.refresh(user)
    assert user.is_superuser is False and user.is_active is True


def test_update_me_email(client):
    user = make_user("old@example.com")
    response = client.patch(
        "/api/v1/users/me", json={"email": "fresh@example.com"}, headers=auth_headers(user)
    )
    assert response.status_code == 200 and response.get_json()["email"] == "fresh@example.com"
    assert login(client, "fresh@example.com", DEFAULT_PASSWORD).status_code == 200
    # Keeping one's own email is not a conflict.
    response = client.patch(
        "/api/v1/users/me", json={"email": "fresh@example.com"}, headers=auth_headers(user)
    )
    assert response.status_code == 200


def test_update_me_email_taken(client):
    make_user("taken@example.com")
    user = make_user("mine@example.com")
    response = client.patch(
        "/api/v1/users/me", json={"email": "taken@example.com"}, headers=auth_headers(user)
    )
    assert response.status_code == 409
    assert response.get_json() == {"detail": "User with this email already exists"}


def test_update_password_me(client):
    user = make_user("pw@example.com")
    response = client.patch(
        "/api/v1/users/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "another-password"},
        headers=auth_headers(user),
    )
    assert response.status_code == 200
    assert response.get_json() == {"message": "Password updated successfully"}
    assert login(client, "pw@example.com", DEFAULT_PASSWORD).status_code == 400
    assert login(client, "pw@example.com", "another-password").status_code == 200


def test_update_password_me_errors(client):
    user = make_user()
    headers = auth_headers(user)
    response = client.patch(
        "/api/v1/users/me/password",
        json={"current_password": "not-my-password", "new_password": "another-password"},
        headers=headers,
    )
    assert response.status_code == 400 and response.get_json() == {"detail": "Incorrect password"}
    response = client.patch(
        "/api/v1/users/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": DEFAULT_PASSWORD},
        headers=headers,
    )
    assert response.status_code == 400
    assert response.get_json() == {"detail": "New password cannot be the same as the current one"}
    response = client.patch(
        "/api/v1/users/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "short"},
        headers=headers,
    )
    assert response.status_code == 422 and "new_password" in response.get_json()["errors"]


def test_delete_me(client):
    user = make_user("leaving@example.com")
    headers = auth_headers(user)
    response = client.delete("/api/v1/users/me", headers=headers)
    assert response.status_code == 200
    assert response.get_json() == {"message": "User deleted successfully"}
    assert db.session.execute(select(User).where(User.email == "leaving@example.com")).first() is None
    assert client.get("/api/v1/users/me", headers=headers).status_code == 404


def test_superuser_cannot_delete_itself(client):
    admin = make_user(is_superuser=True)
    response = client.delete("/api/v1/users/me", headers=auth_headers(admin))
    assert response.status_code == 403
    assert response.get_json() == {"detail": "Super users are not allowed to delete themselves"}
    response = client.delete(f"/api/v1/users/{admin.id}", headers=auth_headers(admin))
    assert response.status_code == 403
    assert response.get_json() == {"detail": "Super users are not allowed to delete themselves"}


def _workspace_with_everything(owner: User) -> Workspace:
    workspace = Workspace(owner_id=owner.id, handle=f"ws-{uuid.uuid4().hex[:8]}", name="Shop")
    db.session.add(workspace)
    db.session.flush()
    db.session.add(WorkspaceService(workspace_id=workspace.id, name="Cut"))
    db.session.add(
        SchedulingConnector(
            workspace_id=workspace.id,
            type="calendly",
            config={"link": "https://calendly.com/x"},
            is_active=True,
        )
    )
    conversation = Conversation(workspace_id=workspace.id)
    db.session.add(conversation)
    db.session.flush()
    question = ConversationMessage(conversation_id=conversation.id, role="user", content="hi")
    db.session.add(question)
    db.session.flush()
    run = AgentRun(conversation_id=conversation.id, user_message_id=question.id, status="completed")
    db.session.add(run)
    db.session.flush()
    reply = ConversationMessage(
        conversation_id=conversation.id, role="assistant", content="hello", run_id=run.id
    )
    db.session.add(reply)
    db.session.flush()
    run.reply_message_id = reply.id
    db.session.commit()
    return workspace


def _count(model) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


@pytest.mark.parametrize("by_admin", [False, True])
def test_deleting_an_owner_cascades_to_the_workspace(client, by_admin):
    owner = make_user("owner@example.com")
    _workspace_with_everything(owner)
    other = _workspace_with_everything(make_user("bystander@example.com"))
    if by_admin:
        response = client.delete(
            f"/api/v1/users/{owner.id}", headers=auth_headers(make_user(is_superuser=True))
        )
    else:
        response = client.delete("/api/v1/users/me", headers=auth_headers(owner))
    assert response.status_code == 200
    assert response.get_json() == {"message": "User deleted successfully"}
    db.session.expire_all()
    assert [w.id for w in db.session.execute(select(Workspace)).scalars()] == [other.id]
    for model, remaining in [
        (WorkspaceService, 1),
        (SchedulingConnector, 1),
        (Conversation, 1),
        (ConversationMessage, 2),
        (AgentRun, 1),
    ]:
        assert _count(model) == remaining, model.__name__


# --- superuser routes ------------------------------------------------------------


def test_list_users_superuser_only(client):
    user = make_user()
    response = client.get("/api/v1/users/", headers=auth_headers(user))
    assert response.status_code == 403 and response.get_json() == NO_PRIVILEGES
    assert client.get("/api/v1/users/").status_code == 401


def test_list_users_pages(client):
    admin = make_user("admin@example.com", is_superuser=True)
    for i in range(4):
        make_user(f"u{i}@example.com")
    body = client.get("/api/v1/users/", headers=auth_headers(admin)).get_json()
    assert body["count"] == 5 and len(body["data"]) == 5
    assert all(set(item) == PUBLIC_FIELDS for item in body["data"])
    page = client.get("/api/v1/users/?skip=1&limit=2", headers=auth_headers(admin)).get_json()
    assert page["count"] == 5
    assert [u["id"] for u in page["data"]] == [u["id"] for u in body["data"][1:3]]


def test_create_user_as_superuser(client):
    admin = make_user(is_superuser=True)
    response = client.post(
        "/api/v1/users/",
        json={
            "email": "made@example.com",
            "password": "long-enough",
            "is_superuser": True,
            "full_name": "Made",
        },
        headers=auth_headers(admin),
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["email"] == "made@example.com" and body["is_superuser"] is True
    assert login(client, "made@example.com", "long-enough").status_code == 200
    response = client.post(
        "/api/v1/users/",
        json={"email": "made@example.com", "password": "long-enough"},
        headers=auth_headers(admin),
    )
    assert response.status_code == 400
    assert response.get_json() == {"detail": "The user with this email already exists in the system"}


def test_create_user_needs_superuser_before_body_validation(client):
    user = make_user()
    response = client.post("/api/v1/users/", json={"email": "bad"}, headers=auth_headers(user))
    assert response.status_code == 403 and response.get_json() == NO_PRIVILEGES


def test_read_user_by_id(client):
    user = make_user()
    other = make_user()
    admin = make_user(is_superuser=True)
    assert client.get(f"/api/v1/users/{user.id}", headers=auth_headers(user)).get_json()["id"] == str(user.id)
    response = client.get(f"/api/v1/users/{other.id}", headers=auth_headers(user))
    assert response.status_code == 403 and response.get_json() == NO_PRIVILEGES
    assert client.get(f"/api/v1/users/{other.id}", headers=auth_headers(admin)).get_json()["id"] == str(
        other.id
    )
    response = client.get(f"/api/v1/users/{uuid.uuid4()}", headers=auth_headers(admin))
    assert response.status_code == 404 and response.get_json() == {"detail": "User not found"}
    assert client.get("/api/v1/users/not-a-uuid", headers=auth_headers(admin)).status_code == 404


def test_update_user_as_superuser(client):
    admin = make_user(is_superuser=True)
    user = make_user("target@example.com")
    response = client.patch(
        f"/api/v1/users/{user.id}",
        json={"full_name": "Renamed", "is_active": False, "password": "reset-by-admin"},
        headers=auth_headers(admin),
    )
    assert response.status_code == 200
    assert response.get_json()["full_name"] == "Renamed" and response.get_json()["is_active"] is False
    assert login(client, "target@example.com", "reset-by-admin").get_json() == {"detail": "Inactive user"}

    make_user("other@example.com")
    response = client.patch(
        f"/api/v1/users/{user.id}", json={"email": "other@example.com"}, headers=auth_headers(admin)
    )
    assert response.status_code == 409
    assert response.get_json() == {"detail": "User with this email already exists"}
    response = client.patch(
        f"/api/v1/users/{uuid.uuid4()}", json={"full_name": "x"}, headers=auth_headers(admin)
    )
    assert response.status_code == 404
    assert response.get_json() == {"detail": "The user with this id does not exist in the system"}


def test_update_and_delete_user_need_superuser(client):
    user = make_user()
    other = make_user()
    response = client.patch(f"/api/v1/users/{other.id}", json={"full_name": "x"}, headers=auth_headers(user))
    assert response.status_code == 403 and response.get_json() == NO_PRIVILEGES
    response = client.delete(f"/api/v1/users/{other.id}", headers=auth_headers(user))
    assert response.status_code == 403 and response.get_json() == NO_PRIVILEGES
    assert db.session.get(User, other.id) is not None


def test_delete_user_as_superuser(client):
    admin = make_user(is_superuser=True)
    user = make_user()
    response = client.delete(f"/api/v1/users/{user.id}", headers=auth_headers(admin))
    assert response.status_code == 200 and response.get_json() == {"message": "User deleted successfully"}
    response = client.delete(f"/api/v1/users/{user.id}", headers=auth_headers(admin))
    assert response.status_code == 404 and response.get_json() == {"detail": "User not found"}


def test_inactive_user_is_refused_everywhere(client):
    user = make_user(is_active=False)
    for method, path in [
        ("get", "/api/v1/users/me"),
        ("patch", "/api/v1/users/me"),
        ("delete", "/api/v1/users/me"),
    ]:
        response = getattr(client, method)(path, json={}, headers=auth_headers(user))
        assert response.status_code == 400 and response.get_json() == {"detail": "Inactive user"}


# --- CLI: the first superuser ----------------------------------------------------


def test_init_data_and_create_superuser_are_idempotent(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "FIRST_SUPERUSER", "boss@example.com")
    monkeypatch.setitem(app.config, "FIRST_SUPERUSER_PASSWORD", "boss-password")
    runner = app.test_cli_runner()
    first = runner.invoke(args=["init-data"])
    assert first.exit_code == 0 and "Created superuser boss@example.com" in first.output
    second = runner.invoke(args=["create-superuser"])
    assert second.exit_code == 0 and "Kept existing superuser boss@example.com" in second.output
    users = db.session.execute(select(User)).scalars().all()
    assert [(u.email, u.is_superuser) for u in users] == [("boss@example.com", True)]
    assert login(client, "boss@example.com", "boss-password").status_code == 200


def test_create_superuser_refuses_a_short_password(app, monkeypatch):
    monkeypatch.setitem(app.config, "FIRST_SUPERUSER", "boss@example.com")
    monkeypatch.setitem(app.config, "FIRST_SUPERUSER_PASSWORD", "short")
    result = app.test_cli_runner().invoke(args=["create-superuser"])
    assert result.exit_code != 0 and "8 to 128" in result.output
    assert _count(User) == 0


# --- setup-wizard profile -----------------------------------------------------------

WIZARD_PROFILE = {
    "name": "Dana",
    "about": "A small salon in the old town.\n\nOpen since 2011.",
    "profile_type": "hair salon",
    "faqs": "Q: Do you cut children's hair?\nA: Yes, under-12s pay half.",
}


def test_wizard_profile_fields_round_trip_on_me_and_the_superusers_routes(client):
    user = make_user()
    response = client.patch("/api/v1/users/me", json=WIZARD_PROFILE, headers=auth_headers(user))
    assert response.status_code == 200
    body = response.get_json()
    assert {k: body[k] for k in WIZARD_PROFILE} == WIZARD_PROFILE and body["avatar_url"] is None
    assert {
        k: client.get("/api/v1/users/me", headers=auth_headers(user)).get_json()[k] for k in WIZARD_PROFILE
    } == (WIZARD_PROFILE)

    admin = make_user(is_superuser=True)
    response = client.patch(
        f"/api/v1/users/{user.id}", json={"faqs": None, "profile_type": "barber"}, headers=auth_headers(admin)
    )
    assert response.status_code == 200
    assert response.get_json()["faqs"] is None and response.get_json()["profile_type"] == "barber"
    response = client.post(
        "/api/v1/users/",
        json={"email": "wizard@example.com", "password": "long-enough", **WIZARD_PROFILE},
        headers=auth_headers(admin),
    )
    assert response.status_code == 201
    assert {k: response.get_json()[k] for k in WIZARD_PROFILE} == WIZARD_PROFILE
    # avatar_url is set by uploading an image only.
    response = client.patch(
        "/api/v1/users/me", json={"avatar_url": "https://x.example/a.png"}, headers=auth_headers(user)
    )
    assert response.status_code == 200 and response.get_json()["avatar_url"] is None


@pytest.mark.parametrize(
    "patch", [{"profile_type": "p" * 51}, {"name": "n" * 256}, {"faqs": 3}, {"about": ["x"]}]
)
def test_wizard_profile_validation(client, patch):
    user = make_user()
    response = client.patch("/api/v1/users/me", json=patch, headers=auth_headers(user))
    assert response.status_code == 422 and set(response.get_json()["errors"]) == set(patch)
