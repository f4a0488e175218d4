"""Malformed and unstorable input gets a 4xx JSON error and writes nothing, on every
route and on both databases: lone surrogates, NUL, deep JSON, huge numbers, floats and
other scripts' digits for integers, bodies that are not JSON, oversized chunked bodies."""

import io
import json

import pytest
from flask_migrate import upgrade
from sqlalchemy import func, select

from backend.api.parsing import MAX_JSON_DEPTH, decode_json
from backend.errors import BadRequest
from backend.extensions import db
from backend.models import (
    Conversation,
    ConversationMessage,
    SchedulingConnector,
    User,
    Workspace,
    WorkspaceService,
)
from backend.rules.text import UNSTORABLE_TEXT_MESSAGE, holds_unstorable_text, is_storable_text
from tests.factories import auth_headers, make_conversation, make_user, make_workspace
from tests.helpers import assert_error, build_app

API = "/api/v1"
LONE_SURROGATE = "\ud800"
NUL = "\x00"


def raw_post(client, path, payload: str, headers=None, method="POST"):
    """Sends `payload` as the body exactly as written (json= would refuse a lone surrogate)."""
    return client.open(
        path,
        method=method,
        data=payload.encode("utf-8", "surrogatepass"),
        content_type="application/json",
        headers=headers or {},
    )


def count(model) -> int:
    db.session.expire_all()
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def assert_unstorable(response, field: str):
    body = assert_error(response, 422)
    assert body["errors"] == {field: [UNSTORABLE_TEXT_MESSAGE]}


# --- the rule itself -----------------------------------------------------------------


@pytest.mark.parametrize("text", ["plain", "café ☕", "日本語", "emoji 🎉", "", "tab\tnew\nline"])
def test_ordinary_text_is_storable(text):
    assert is_storable_text(text)
    assert not holds_unstorable_text({"a": [text, {"b": text}]})


@pytest.mark.parametrize("text", [NUL, "a\x00b", LONE_SURROGATE, "x\udfffy", "\udc80"])
def test_nul_and_lone_surrogates_are_not_storable(text):
    assert not is_storable_text(text)
    assert holds_unstorable_text({"deep": [{"deeper": text}]})
    assert holds_unstorable_text({text: 1})  # keys count too


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 100_000 + "]" * 100_000,  # past Python's recursion limit
        "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
        '{"n": ' + "7" * 5000 + "}",  # past Python's int-digits limit
        '{"n": 1' + "0" * 100 + "}",
        '{"n": 1e999}',  # infinite as a float
        '{"n": NaN}',
        '{"n": Infinity}',
        "{not json",
    ],
)
def test_decode_json_refuses_what_python_would_choke_on(raw):
    with pytest.raises(BadRequest) as caught:
        decode_json(raw.encode())
    assert caught.value.detail == "Malformed JSON body"


def test_decode_json_refuses_invalid_utf8_and_encoded_surrogates():
    for raw in (b'{"a": "\xff"}', b'{"a": "\xed\xa0\x80"}'):
        with pytest.raises(BadRequest):
            decode_json(raw)


@pytest.mark.parametrize(
    "raw, value", [(b"7", 7), (b"-1.5", -1.5), (b'"text"', "text"), (b"null", None), (b"[]", [])]
)
def test_decode_json_takes_any_json_value_at_the_top(raw, value):
    assert decode_json(raw) == value


def test_decode_json_keeps_ordinary_values():
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert decode_json(nested.encode()) is not None
    assert decode_json(b'{"a": 12, "b": 1.5, "c": "x", "d": [true, null]}') == {
        "a": 12,
        "b": 1.5,
        "c": "x",
        "d": [True, None],
    }


# --- anonymous routes --------------------------------------------------------------


def test_lone_surrogate_in_a_visitor_name_is_a_422_and_starts_nothing(client):
    workspace = make_workspace()
    body = json.dumps({"workspace_handle": workspace.handle, "visitor_name": "X"})
    payload = body.replace('"X"', '"\\ud800"')
    assert_unstorable(raw_post(client, f"{API}/public/conversations", payload), "visitor_name")
    assert count(Conversation) == 0


@pytest.mark.parametrize("field", ["content", "idempotency_key"])
@pytest.mark.parametrize("bad", ["\\ud800", "\\u0000", "ok\\udfffok"])
def test_unstorable_text_in_a_visitor_message_is_a_422(client, field, bad):
    workspace = make_workspace()
    created = client.post(
        f"{API}/public/conversations", json={"workspace_handle": workspace.handle}
    ).get_json()
    body = {"content": "hello", "idempotency_key": "k1"}
    payload = json.dumps(body).replace(f'"{body[field]}"', f'"{bad}"')
    response = raw_post(
        client,
        f"{API}/public/conversations/{created['conversation_id']}/messages",
        payload,
        headers={"X-Visitor-Token": created["visitor_token"]},
    )
    assert_unstorable(response, field)
    assert count(ConversationMessage) == 0


def test_signup_and_reset_refuse_unstorable_text(client):
    payload = '{"email": "a@example.com", "password": "long-enough-pw", "full_name": "\\ud800"}'
    assert_unstorable(raw_post(client, f"{API}/users/signup", payload), "full_name")
    assert count(User) == 0
    payload = '{"token": "\\ud800", "new_password": "long-enough-pw"}'
    assert_unstorable(raw_post(client, f"{API}/reset-password/", payload), "token")


def test_nul_in_a_login_form_is_a_422(client):
    response = client.post(
        f"{API}/login/access-token", data={"username": "a\x00@example.com", "password": "x"}
    )
    assert_unstorable(response, "username")


# --- owner routes --------------------------------------------------------------------


@pytest.fixture(params=["postgresql", "sqlite"])
def api(request, app, client, tmp_path):
    """A client of the app on each database: both must refuse the same input."""
    if request.param == "postgresql":
        yield client
        return
    with build_app(app, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'hostile.db'}") as other:
        with other.app_context():
            upgrade()
            yield other.test_client()


@pytest.fixture
def owner(api):
    user = make_user()
    return user, make_workspace(owner=user), auth_headers(user)


@pytest.mark.parametrize("bad", ["\\ud800", "\\u0000"])
def test_unstorable_text_in_owner_writes_is_a_422_and_writes_nothing(api, owner, bad):
    _user, workspace, headers = owner
    conversation = make_conversation(workspace)
    cases = [
        ("PATCH", f"/workspaces/{workspace.id}", '{"name": "A%sB"}', "name", Workspace),
        (
            "POST",
            f"/workspace-services/workspaces/{workspace.id}",
            '{"name": "x%s"}',
            "name",
            WorkspaceService,
        ),
        (
            "POST",
            f"/connectors/workspaces/{workspace.id}",
            '{"type": "square", "config": {"link": "https://squareup.com/%s"}}',
            "config",
            SchedulingConnector,
        ),
        ("PATCH", f"/conversations/{conversation.id}", '{"tags": ["vip", "a%s"]}', "tags", Conversation),
        (
            "POST",
            f"/messages/conversations/{conversation.id}",
            '{"content": "hi %s"}',
            "content",
            ConversationMessage,
        ),
        ("PATCH", "/users/me", '{"bio": "%s"}', "bio", User),
    ]
    for method, path, template, field, model in cases:
        before = count(model)
        response = raw_post(api, API + path, template % bad, headers=headers, method=method)
        assert_unstorable(response, field)
        assert count(model) == before
    db.session.refresh(workspace)
    assert workspace.name == "Test Workspace"
    db.session.refresh(conversation)
    assert "vip" not in (conversation.tags or [])


@pytest.mark.parametrize("param", ["q", "tag", "status"])
def test_nul_in_a_query_filter_is_a_422(api, owner, param):
    _user, workspace, headers = owner
    response = api.get(f"{API}/conversations/workspaces/{workspace.id}?{param}=a%00b", headers=headers)
    assert_unstorable(response, param)


def test_a_json_key_that_is_not_storable_is_named_as_the_body(api, owner):
    _user, workspace, headers = owner
    response = raw_post(api, f"{API}/workspaces/{workspace.id}", '{"\\ud800": 1}', headers, "PATCH")
    assert_unstorable(response, "_body")


# --- malformed bodies, numbers ---------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        "[" * 5000 + "]" * 5000,
        '{"workspace_handle": "demo", "n": ' + "9" * 5000 + "}",
        '{"workspace_handle": "demo", "n": NaN}',
        '{"workspace_handle": ',
    ],
)
def test_malformed_json_is_a_400_on_anonymous_and_owner_routes(api, owner, payload):
    _user, workspace, headers = owner
    assert_error(raw_post(api, f"{API}/public/conversations", payload), 400, "Malformed JSON body")
    response = raw_post(api, f"{API}/workspaces/{workspace.id}", payload, headers, "PATCH")
    assert_error(response, 400, "Malformed JSON body")
    assert count(Conversation) == 0


@pytest.mark.parametrize("value", [1.5, 60.0, True, "١٢", "1_000", " 7", "7 "])
def test_integer_fields_refuse_floats_booleans_and_other_digits(api, owner, value):
    _user, workspace, headers = owner
    response = api.post(
        f"{API}/workspace-services/workspaces/{workspace.id}",
        json={"name": "Massage", "duration_minutes": value},
        headers=headers,
    )
    body = assert_error(response, 422)
    assert list(body["errors"]) == ["duration_minutes"]
    assert count(WorkspaceService) == 0


def test_integer_fields_take_json_integers(api, owner):
    _user, workspace, headers = owner
    response = api.post(
        f"{API}/workspace-services/workspaces/{workspace.id}",
        json={"name": "Massage", "duration_minutes": 60, "sort_order": -3},
        headers=headers,
    )
    assert response.status_code == 201
    assert response.get_json()["duration_minutes"] == 60


@pytest.mark.parametrize("limit", ["%D9%A1%D9%A2", "1.5", "12abc", "%EF%BC%91"])  # ١٢, 1.5, fullwidth １
def test_query_integers_must_be_ascii_digits(api, owner, limit):
    _user, workspace, headers = owner
    response = api.get(f"{API}/conversations/workspaces/{workspace.id}?limit={limit}", headers=headers)
    assert list(assert_error(response, 422)["errors"]) == ["limit"]
    response = api.get(f"{API}/conversations/workspaces/{workspace.id}?limit=12", headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize("price", ["١٢.٥٠", "12,50", "1e3", " 12"])
def test_prices_must_be_plain_ascii_decimals(api, owner, price):
    _user, workspace, headers = owner
    response = api.post(
        f"{API}/workspace-services/workspaces/{workspace.id}",
        json={"name": "Massage", "starting_price": price},
        headers=headers,
    )
    assert list(assert_error(response, 422)["errors"]) == ["starting_price"]


# --- content types and sizes ---------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type, data",
    [
        ("text/plain", '{"workspace_handle": "demo"}'),
        ("application/x-www-form-urlencoded", "workspace_handle=demo"),
        ("multipart/form-data; boundary=x", "--x--"),
    ],
)
def test_a_body_that_is_not_json_on_a_json_route_is_a_415(api, owner, content_type, data):
    _user, workspace, headers = owner
    response = api.post(f"{API}/public/conversations", data=data, content_type=content_type)
    assert_error(response, 415)
    response = api.patch(
        f"{API}/workspaces/{workspace.id}", data=data, content_type=content_type, headers=headers
    )
    assert_error(response, 415)
    assert count(Conversation) == 0


def test_a_json_route_without_a_body_reports_the_missing_fields(client):
    response = client.post(f"{API}/public/conversations")
    assert list(assert_error(response, 422)["errors"]) == ["workspace_handle"]


def test_a_chunked_body_over_the_limit_is_a_413(client):
    """A chunked request has no Content-Length: the limit must hold while reading."""
    big = b'{"workspace_handle": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    response = client.post(
        f"{API}/public/conversations",
        input_stream=io.BytesIO(big),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_error(response, 413)
    assert count(Conversation) == 0
