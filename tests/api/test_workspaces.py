"""Workspaces: creation rules, handles, validation, access, the auto-created `me`."""

import threading

import pytest

from backend.extensions import db
from backend.models import Workspace
from backend.services import workspaces as workspaces_service
from tests.concurrency import run_concurrently
from tests.factories import (
    auth_headers,
    make_connector,
    make_conversation,
    make_service,
    make_user,
    make_workspace,
)

BASE = "/api/v1/workspaces"


def test_create_returns_every_field(client):
    user = make_user()
    body = {
        "handle": "jane-studio",
        "name": "Jane's Studio",
        "type": "business",
        "tone": "friendly",
        "timezone": "America/New_York",
        "knowledge_base": "We open at 9.",
        "public_name": "Jane",
        "subtitle": "Yoga",
        "description": "Classes",
        "profile_image_url": "https://example.com/me.png",
        "unknown_field": "ignored",
    }
    response = client.post(f"{BASE}/", json=body, headers=auth_headers(user))
    assert response.status_code == 201, response.json
    data = response.json
    assert data["owner_id"] == str(user.id)
    for key, value in body.items():
        if key != "unknown_field":
            assert data[key] == value
    assert data["is_active"] is True
    assert data["created_at"].endswith("+00:00") and data["updated_at"]
    assert "unknown_field" not in data


def test_create_defaults_and_derived_handle(client):
    user = make_user(email="Mary.Ann+test@example.com")
    response = client.post(f"{BASE}/", json={}, headers=auth_headers(user))
    assert response.status_code == 201
    assert response.json["handle"] == "mary-ann-test"
    assert response.json["name"] == "My Workspace"
    assert response.json["timezone"] == "UTC"


def test_one_workspace_per_user(client):
    user = make_user()
    make_workspace(user)
    response = client.post(f"{BASE}/", json={"handle": "another-one"}, headers=auth_headers(user))
    assert response.status_code == 409
    assert response.json == {"detail": "User already has a workspace"}


def test_handle_taken(client):
    make_workspace(handle="taken-handle")
    response = client.post(f"{BASE}/", json={"handle": "taken-handle"}, headers=auth_headers(make_user()))
    assert response.status_code == 409
    assert response.json == {"detail": "Handle 'taken-handle' is already taken"}


def test_patch_to_taken_handle_is_409(client):
    make_workspace(handle="first-one")
    workspace = make_workspace(handle="second-one")
    response = client.patch(
        f"{BASE}/{workspace.id}", json={"handle": "first-one"}, headers=auth_headers(workspace.owner)
    )
    assert response.status_code == 409
    assert response.json["detail"] == "Handle 'first-one' is already taken"


@pytest.mark.parametrize(
    "handle",
    ["ab", "a" * 64, "Upper", "has_underscore", "-lead", "trail-", "dou--ble", "sp ace", "api", "admin",
     "www", "public", "static", "docs", "chat", "metrics", "login", "app", 42],
)  # fmt: skip
def test_bad_handles_are_422(client, handle):
    response = client.post(f"{BASE}/", json={"handle": handle}, headers=auth_headers(make_user()))
    assert response.status_code == 422
    assert response.json["detail"] == "Validation error"
    assert "handle" in response.json["errors"]


@pytest.mark.parametrize("handle", ["abc", "a-b", "x" * 63, "studio-42"])
def test_good_handles(client, handle):
    response = client.post(f"{BASE}/", json={"handle": handle}, headers=auth_headers(make_user()))
    assert response.status_code == 201
    assert response.json["handle"] == handle


@pytest.mark.parametrize(
    "field,value",
    [
        ("tone", "warm"),
        ("type", "demo"),
        ("tone", "t" * 50),
        ("type", "Enterprise studio"),
        ("tone", "formal"),
    ],
)
def test_type_and_tone_are_free_text_stored_as_given(client, field, value):
    workspace = make_workspace()
    response = client.patch(
        f"{BASE}/{workspace.id}", json={field: value}, headers=auth_headers(workspace.owner)
    )
    assert response.status_code == 200 and response.get_json()[field] == value
    again = client.get(f"{BASE}/{workspace.id}", headers=auth_headers(workspace.owner)).get_json()
    assert again[field] == value


@pytest.mark.parametrize(
    "field,value",
    [
        ("timezone", "Mars/Olympus"),
        ("timezone", "utc+2"),
        # Free text of 1..50 characters (the seed's "warm" / "demo" are fine, above).
        ("tone", ""),
        ("tone", "t" * 51),
        ("tone", 7),
        ("type", ""),
        ("type", "   "),
        ("type", "e" * 51),
        ("name", ""),
        ("name", "   "),
        ("name", None),
        ("profile_image_url", "javascript:alert(1)"),
        ("is_active", "maybe"),
    ],
)
def test_bad_fields_are_422(client, field, value):
    workspace = make_workspace()
    response = client.patch(
        f"{BASE}/{workspace.id}", json={field: value}, headers=auth_headers(workspace.owner)
    )
    assert response.status_code == 422
    assert field in response.json["errors"]


def test_patch_updates_and_keeps_long_knowledge_base_intact(client):
    workspace = make_workspace()
    knowledge = "".join(f"Line {i}: ünïcode ✓ prices & hours\n" for i in range(15_000))
    assert 400_000 < len(knowledge.encode()) < 1024 * 1024
    response = client.patch(
        f"{BASE}/{workspace.id}",
        json={"knowledge_base": knowledge, "tone": "playful", "timezone": "Asia/Kolkata"},
        headers=auth_headers(workspace.owner),
    )
    assert response.status_code == 200
    fetched = client.get(f"{BASE}/{workspace.id}", headers=auth_headers(workspace.owner)).json
    assert fetched["knowledge_base"] == knowledge
    assert fetched["tone"] == "playful" and fetched["timezone"] == "Asia/Kolkata"


def test_body_over_one_mib_is_413(client):
    workspace = make_workspace()
    response = client.patch(
        f"{BASE}/{workspace.id}",
        json={"knowledge_base": "x" * (1024 * 1024 + 10)},
        headers=auth_headers(workspace.owner),
    )
    assert response.status_code == 413
    assert "detail" in response.json


def test_access_rules(client):
    workspace = make_workspace()
    other = make_user()
    response = client.get(f"{BASE}/{workspace.id}", headers=auth_headers(other))
    assert response.status_code == 403
    assert response.json == {"detail": "Not your workspace"}
    admin = make_user(is_superuser=True)
    assert client.get(f"{BASE}/{workspace.id}", headers=auth_headers(admin)).status_code == 200
    missing = client.get(f"{BASE}/00000000-0000-0000-0000-000000000000", headers=auth_headers(other))
    assert missing.status_code == 404
    assert missing.json == {"detail": "Workspace not found"}
    malformed = client.get(f"{BASE}/not-a-uuid", headers=auth_headers(other))
    assert malformed.status_code == 404
    assert malformed.json == {"detail": "Workspace not found"}
    assert client.get(f"{BASE}/{workspace.id}").status_code == 401


def test_list_is_superuser_only(client):
    make_workspace()
    make_workspace()
    response = client.get(f"{BASE}/", headers=auth_headers(make_user()))
    assert response.status_code == 403
    assert response.json == {"detail": "The user doesn't have enough privileges"}
    admin = make_user(is_superuser=True)
    response = client.get(f"{BASE}/?limit=1", headers=auth_headers(admin))
    assert response.status_code == 200
    assert response.json["count"] == 2 and len(response.json["data"]) == 1
    assert client.get(f"{BASE}/?limit=1001", headers=auth_headers(admin)).status_code == 422


def test_delete_refused_while_content_exists(client):
    for maker in (make_service, make_connector, make_conversation):
        workspace = make_workspace()
        thing = maker(workspace)
        response = client.delete(f"{BASE}/{workspace.id}", headers=auth_headers(workspace.owner))
        assert response.status_code == 400
        assert "delete them" in response.json["detail"]
        db.session.delete(thing)
        db.session.commit()
        response = client.delete(f"{BASE}/{workspace.id}", headers=auth_headers(workspace.owner))
        assert response.status_code == 200
        assert response.json == {"message": "Workspace deleted successfully"}
        assert db.session.get(Workspace, workspace.id) is None


def test_me_creates_with_defaults_once(client):
    user = make_user(email="jane.doe+x@example.com")
    first = client.get(f"{BASE}/me", headers=auth_headers(user))
    assert first.status_code == 200
    assert first.json["handle"] == "jane-doe-x"
    assert (first.json["name"], first.json["type"], first.json["tone"], first.json["timezone"]) == (
        "My Workspace",
        "individual",
        "professional",
        "UTC",
    )
    second = client.get(f"{BASE}/me", headers=auth_headers(user))
    assert second.json["id"] == first.json["id"]


@pytest.mark.parametrize(
    "email,handle",
    [
        ("jo@example.com", "jo0"),
        ("a@example.com", "a00"),
        ("+++@example.com", "owner"),
        ("admin@example.com", "admin-2"),
        ("José.Núñez@example.com", "jose-nunez"),
        ("x" * 70 + "@example.com", "x" * 57),
    ],
)
def test_me_handle_derivation(client, email, handle):
    response = client.get(f"{BASE}/me", headers=auth_headers(make_user(email=email)))
    assert response.json["handle"] == handle


def test_me_handle_collisions_get_suffixes(client):
    make_workspace(handle="sam")
    handles = [
        client.get(f"{BASE}/me", headers=auth_headers(make_user(email=f"sam@host{i}.com"))).json["handle"]
        for i in range(3)
    ]
    assert handles == ["sam-2", "sam-3", "sam-4"]


class LookupRace:
    """Every caller sees "no workspace yet" before any of them inserts, so the race is real:
    the first lookup of each caller that finds nothing waits until all callers made theirs.

    `misses` lists those lookups (the losers' re-reads after a failed INSERT do not wait)."""

    def __init__(self, real):
        self.real = real
        self.misses: list = []
        self.barrier: threading.Barrier | None = None
        self._held: set[int] = set()

    def lookup(self, owner_id):
        found = self.real(owner_id)
        if found is None and threading.get_ident() not in self._held:
            self._held.add(threading.get_ident())
            self.misses.append(owner_id)
            self.barrier.wait(timeout=10)
        return found

    def run(self, app, calls):
        self.barrier = threading.Barrier(len(calls))
        return run_concurrently(app, calls)


@pytest.fixture
def lookup_race(monkeypatch):
    race = LookupRace(workspaces_service._by_owner)
    monkeypatch.setattr(workspaces_service, "_by_owner", race.lookup)
    return race


def test_me_is_safe_under_concurrent_first_calls(app, lookup_race):
    user = make_user(email="race@example.com")
    headers = auth_headers(user)
    results = lookup_race.run(app, [lambda c: c.get(f"{BASE}/me", headers=headers)] * 4)
    assert len(lookup_race.misses) == 4  # all four went on to INSERT
    assert [r.status_code for r in results] == [200] * 4
    assert len({r.json["id"] for r in results}) == 1
    assert db.session.scalar(db.select(db.func.count()).select_from(Workspace)) == 1


def test_me_concurrent_users_with_same_local_part_get_distinct_handles(app, lookup_race):
    users = [make_user(email=f"kim@domain{i}.com") for i in range(4)]
    headers = [auth_headers(u) for u in users]
    results = lookup_race.run(app, [lambda c, h=h: c.get(f"{BASE}/me", headers=h) for h in headers])
    assert [r.status_code for r in results] == [200] * 4
    assert sorted(r.json["handle"] for r in results) == ["kim", "kim-2", "kim-3", "kim-4"]


def test_concurrent_posts_of_one_user_create_one_workspace(app, lookup_race):
    headers = auth_headers(make_user())
    results = lookup_race.run(app, [lambda c: c.post(f"{BASE}/", json={}, headers=headers)] * 3)
    assert sorted(r.status_code for r in results) == [201, 409, 409]
    assert {r.json["detail"] for r in results if r.status_code == 409} == {"User already has a workspace"}


def test_concurrent_posts_with_derived_handles_all_succeed(app, lookup_race):
    headers = [auth_headers(make_user(email=f"max@site{i}.com")) for i in range(3)]
    results = lookup_race.run(app, [lambda c, h=h: c.post(f"{BASE}/", json={}, headers=h) for h in headers])
    assert [r.status_code for r in results] == [201] * 3
    assert sorted(r.json["handle"] for r in results) == ["max", "max-2", "max-3"]
