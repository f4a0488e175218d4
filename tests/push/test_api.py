"""The push token routes through the Flask client: register (idempotent, moving between
users, racing), delete, and what they refuse."""

import pytest
from sqlalchemy import select

from backend.extensions import db
from backend.models import PushToken
from tests.concurrency import run_concurrently
from tests.factories import auth_headers, make_user
from tests.helpers import assert_error

URL = "/api/v1/users/me/push-tokens"
TOKEN = "ExponentPushToken[abcdefghijklmnopqrstuv]"


def _rows() -> list[tuple]:
    db.session.expire_all()
    return list(db.session.execute(select(PushToken.user_id, PushToken.token)).all())


def test_register_is_idempotent(client):
    user = make_user()
    created = client.post(URL, json={"token": TOKEN}, headers=auth_headers(user))
    assert created.status_code == 201, created.json
    assert created.json["token"] == TOKEN and created.json["created_at"]
    again = client.post(URL, json={"token": TOKEN, "extra": 1}, headers=auth_headers(user))
    assert again.status_code == 201 and again.json == created.json
    assert _rows() == [(user.id, TOKEN)]


def test_a_token_of_another_user_moves_to_the_caller(client):
    first, second = make_user(), make_user()
    client.post(URL, json={"token": TOKEN}, headers=auth_headers(first))
    moved = client.post(URL, json={"token": TOKEN}, headers=auth_headers(second))
    assert moved.status_code == 201
    assert _rows() == [(second.id, TOKEN)]
    assert client.delete(f"{URL}/{TOKEN}", headers=auth_headers(first)).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"token": ""},
        {"token": None},
        {"token": 42},
        {"token": ["ExponentPushToken[a]"]},
        {"token": "abc"},
        {"token": "ExponentPushToken[]"},
        {"token": "ExponentPushToken[a\x00b]"},
        {"token": "ExponentPushToken[" + "a" * 250 + "]"},
    ],
)
def test_what_is_not_an_expo_token_is_a_422(client, body):
    response = client.post(URL, json=body, headers=auth_headers(make_user()))
    assert_error(response, 422)
    assert "token" in response.json["errors"]
    assert _rows() == []


def test_routes_need_a_user(client):
    assert_error(client.post(URL, json={"token": TOKEN}), 401)
    assert_error(client.delete(f"{URL}/{TOKEN}"), 401)


def test_delete_forgets_only_the_callers_token(client):
    user, other = make_user(), make_user()
    mine, theirs = TOKEN, "ExpoPushToken[other-device]"
    client.post(URL, json={"token": mine}, headers=auth_headers(user))
    client.post(URL, json={"token": theirs}, headers=auth_headers(other))
    assert_error(client.delete(f"{URL}/{theirs}", headers=auth_headers(user)), 404, "Push token not found")
    deleted = client.delete(f"{URL}/{mine}", headers=auth_headers(user))
    assert deleted.status_code == 204 and deleted.get_data() == b""
    assert _rows() == [(other.id, theirs)]
    assert_error(client.delete(f"{URL}/{mine}", headers=auth_headers(user)), 404, "Push token not found")


@pytest.mark.parametrize(
    "path", ["nope", "%00", "ExponentPushToken[a%00]", "x" * 2000, "%F0%9F%98%80", "%ED%A0%80"]
)
def test_deleting_what_is_no_token_is_a_json_404(client, path):
    response = client.delete(f"{URL}/{path}", headers=auth_headers(make_user()))
    assert_error(response, 404)


def test_concurrent_registrations_of_one_token_all_succeed(app):
    user, other = make_user(), make_user()
    headers = [auth_headers(user)] * 4 + [auth_headers(other)] * 4
    results = run_concurrently(
        app, [lambda c, h=h: c.post(URL, json={"token": TOKEN}, headers=h).status_code for h in headers]
    )
    assert results == [201] * 8
    rows = _rows()
    assert len(rows) == 1 and rows[0][1] == TOKEN and rows[0][0] in (user.id, other.id)


def test_deleting_the_user_deletes_their_tokens(client):
    user = make_user()
    client.post(URL, json={"token": TOKEN}, headers=auth_headers(user))
    assert client.delete("/api/v1/users/me", headers=auth_headers(user)).status_code == 200
    assert _rows() == []
