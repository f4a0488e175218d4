"""The public chat API through the Flask test client: profile, conversations, visitor
tokens, posting and listing messages, runs and their cancellation, rate limits."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from flask import Flask
from sqlalchemy import func, select

from backend.extensions import db, limiter, redis_client
from backend.models import AgentRun, Conversation, ConversationMessage
from backend.services import messages as messages_service
from backend.streams import is_valid_id, stream_key
from tests.api.visitors import (
    API,
    current_workspace,
    list_messages,
    post_message,
    start_conversation,
    visitor,
)
from tests.concurrency import run_concurrently
from tests.factories import make_conversation, make_message, make_service, make_workspace
from tests.helpers import assert_error, build_app


def parse_ts(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"timestamp without offset: {value}"
    return parsed


def run_count(conversation_id=None) -> int:
    query = select(func.count()).select_from(AgentRun)
    if conversation_id is not None:
        query = query.where(AgentRun.conversation_id == uuid.UUID(str(conversation_id)))
    return db.session.execute(query).scalar_one()


def message_count(conversation_id) -> int:
    return db.session.execute(
        select(func.count())
        .select_from(ConversationMessage)
        .where(ConversationMessage.conversation_id == uuid.UUID(str(conversation_id)))
    ).scalar_one()


# --- workspace profile ------------------------------------------------------------------


def test_profile_shows_only_active_services_in_order(client):
    workspace = make_workspace(
        name="Internal name",
        public_name="Luz Yoga",
        subtitle="Yoga in the park",
        description="Classes for everyone.",
        profile_image_url="https://example.com/luz.png",
    )
    make_service(workspace, name="Zumba", sort_order=1, starting_price="10.50", duration_minutes=45)
    make_service(workspace, name="Hatha", sort_order=2)
    make_service(workspace, name="Ashtanga", sort_order=1)
    make_service(workspace, name="Hidden", sort_order=0, is_active=False)
    make_service(make_workspace(), name="Someone else's", sort_order=0)

    response = client.get(f"{API}/workspaces/{workspace.handle}")
    assert response.status_code == 200
    body = response.get_json()
    assert body["handle"] == workspace.handle
    assert body["public_name"] == "Luz Yoga"
    assert body["subtitle"] == "Yoga in the park"
    assert body["description"] == "Classes for everyone."
    assert body["profile_image_url"] == "https://example.com/luz.png"
    assert [s["name"] for s in body["services"]] == ["Ashtanga", "Zumba", "Hatha"]
    zumba = body["services"][1]
    assert zumba["starting_price"] == "10.50" and zumba["duration_minutes"] == 45
    assert zumba["currency"] == "USD"
    assert "knowledge_base" not in body and "owner_id" not in body


def test_profile_without_services_is_an_empty_list(client):
    workspace = make_workspace()
    body = client.get(f"{API}/workspaces/{workspace.handle}").get_json()
    assert body["services"] == []


def test_unknown_or_inactive_workspace_is_not_found(client):
    assert_error(client.get(f"{API}/workspaces/no-such-handle"), 404, "Workspace not found")
    inactive = make_workspace(is_active=False)
    assert_error(client.get(f"{API}/workspaces/{inactive.handle}"), 404, "Workspace not found")
    response = client.post(f"{API}/conversations", json={"workspace_handle": inactive.handle})
    assert_error(response, 404, "Workspace not found")


# --- starting a conversation -------------------------------------------------------------


def test_create_conversation(client):
    workspace = make_workspace()
    before = datetime.now(UTC)
    response = client.post(
        f"{API}/conversations",
        json={"workspace_handle": workspace.handle, "visitor_name": "  Ana  ", "surprise": True},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"conversation_id", "visitor_token", "created_at"}
    assert len(body["visitor_token"]) >= 32
    created = parse_ts(body["created_at"])
    assert before - timedelta(seconds=1) <= created <= datetime.now(UTC) + timedelta(seconds=1)

    conversation = db.session.get(Conversation, uuid.UUID(body["conversation_id"]))
    assert conversation.workspace_id == workspace.id
    assert conversation.channel == "web_public" and conversation.status == "active"
    assert conversation.visitor_name == "Ana"
    # Only a hash of the token is stored.
    assert conversation.visitor_token_hash and body["visitor_token"] not in conversation.visitor_token_hash


def test_each_conversation_gets_its_own_token(client):
    workspace = make_workspace()
    first = start_conversation(client, workspace.handle)
    second = start_conversation(client, workspace.handle)
    assert first[0] != second[0] and first[1] != second[1]


def test_create_conversation_errors(client):
    assert_error(
        client.post(f"{API}/conversations", json={"workspace_handle": "nobody-here"}),
        404,
        "Workspace not found",
    )
    body = assert_error(client.post(f"{API}/conversations", json={"visitor_name": "Ana"}), 422)
    assert "workspace_handle" in body["errors"]
    body = assert_error(client.post(f"{API}/conversations", json={"workspace_handle": 42}), 422)
    assert "workspace_handle" in body["errors"]


# --- the visitor token --------------------------------------------------------------------

ROUTES = [
    ("GET", "messages"),
    ("POST", "messages"),
    ("GET", "runs/{run_id}"),
    ("POST", "runs/{run_id}/cancel"),
    ("GET", "stream"),
]


@pytest.fixture
def conversation_with_run(client):
    conversation_id, token = visitor(client)
    run_id = post_message(client, conversation_id, token).get_json()["run"]["id"]
    return conversation_id, token, run_id


def _call(client, method, conversation_id, path, run_id, token=None, via="header"):
    url = f"{API}/conversations/{conversation_id}/{path.format(run_id=run_id)}"
    headers = {}
    if token is not None and via == "header":
        headers["X-Visitor-Token"] = token
    elif token is not None:
        url += f"?visitor_token={quote(token)}"
    body = {"content": "hi"} if method == "POST" else None
    return client.open(url, method=method, headers=headers, json=body)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_missing_or_wrong_token_is_401(client, conversation_with_run, method, path):
    conversation_id, token, run_id = conversation_with_run
    assert_error(_call(client, method, conversation_id, path, run_id), 401)
    assert_error(_call(client, method, conversation_id, path, run_id, token="x" + token), 401)
    assert_error(_call(client, method, conversation_id, path, run_id, token="wrong", via="query"), 401)
    assert_error(_call(client, method, conversation_id, path, run_id, token=""), 401)
    # Nothing was done on behalf of the failed calls.
    assert run_count(conversation_id) == 1
    assert db.session.get(AgentRun, uuid.UUID(run_id)).status == "queued"


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_unknown_conversation_is_404(client, conversation_with_run, method, path):
    _, token, run_id = conversation_with_run
    missing = uuid.uuid4()
    assert_error(_call(client, method, missing, path, run_id, token=token), 404, "Conversation not found")
    assert_error(_call(client, method, missing, path, run_id), 404, "Conversation not found")


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_token_of_another_conversation_does_not_open_it(client, conversation_with_run, method, path):
    conversation_a, token_a, run_a = conversation_with_run
    conversation_b, _token_b = visitor(client)
    assert_error(_call(client, method, conversation_b, path, run_a, token=token_a), 401)
    assert_error(_call(client, method, conversation_b, path, run_a, token=token_a, via="query"), 401)
    assert message_count(conversation_b) == 0


def test_token_works_as_header_or_query(client, conversation_with_run):
    conversation_id, token, run_id = conversation_with_run
    for via in ("header", "query"):
        response = _call(client, "GET", conversation_id, "runs/{run_id}", run_id, token=token, via=via)
        assert response.status_code == 200
        assert response.get_json()["id"] == run_id
        response = _call(client, "GET", conversation_id, "messages", run_id, token=token, via=via)
        assert response.status_code == 200


def test_malformed_conversation_id_is_not_a_500(client):
    response = client.get(f"{API}/conversations/not-a-uuid/messages", headers={"X-Visitor-Token": "x"})
    assert_error(response, 404)


# --- posting messages ---------------------------------------------------------------------


def test_post_message_creates_message_and_queued_run(client):
    conversation_id, token = visitor(client)
    response = post_message(client, conversation_id, token, "  When are you open?\n ", mood="curious")
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"message", "run", "stream_cursor"}
    message, run = body["message"], body["run"]
    assert message["role"] == "user"
    assert message["content"] == "When are you open?"
    assert message["conversation_id"] == conversation_id
    parse_ts(message["timestamp"])
    assert run["status"] == "queued"
    assert run["conversation_id"] == conversation_id
    assert run["user_message_id"] == message["id"]
    assert run["reply_message_id"] is None and run["error"] is None and run["degraded"] is False
    assert run["started_at"] is None and run["finished_at"] is None
    assert isinstance(body["stream_cursor"], str) and is_valid_id(body["stream_cursor"])

    stored = db.session.get(ConversationMessage, uuid.UUID(message["id"]))
    assert stored.content == "When are you open?"
    assert db.session.get(AgentRun, uuid.UUID(run["id"])).status == "queued"
    assert run_count(conversation_id) == 1


def test_content_at_the_limit_is_accepted(client):
    conversation_id, token = visitor(client)
    response = post_message(client, conversation_id, token, "  " + "a" * 4000 + "  ")
    assert response.status_code == 201
    assert response.get_json()["message"]["content"] == "a" * 4000
    assert post_message(client, conversation_id, token, "x").status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"content": ""},
        {"content": "   \n\t  "},
        {"content": "a" * 4001},
        {"content": " " + "a" * 4001 + " "},
        {"content": 12345},
        {"content": None},
        {"content": ["hi"]},
        {"idempotency_key": "k1"},
        {},
    ],
)
def test_invalid_content_is_422(client, body):
    conversation_id, token = visitor(client)
    response = client.post(
        f"{API}/conversations/{conversation_id}/messages", json=body, headers={"X-Visitor-Token": token}
    )
    assert "content" in assert_error(response, 422)["errors"]
    assert message_count(conversation_id) == 0 and run_count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": "hi\x00there"}, "content"),
        ({"content": "hi", "idempotency_key": "k\x00"}, "idempotency_key"),
    ],
)
def test_nul_characters_are_422(client, body, field):
    conversation_id, token = visitor(client)
    response = client.post(
        f"{API}/conversations/{conversation_id}/messages", json=body, headers={"X-Visitor-Token": token}
    )
    assert field in assert_error(response, 422)["errors"]
    assert message_count(conversation_id) == 0


def test_nul_characters_when_starting_a_conversation(client):
    handle = current_workspace().handle
    response = client.post(
        f"{API}/conversations", json={"workspace_handle": handle, "visitor_name": "a\x00b"}
    )
    assert "visitor_name" in assert_error(response, 422)["errors"]
    response = client.post(f"{API}/conversations", json={"workspace_handle": handle + "\x00"})
    assert "workspace_handle" in assert_error(response, 422)["errors"]
    assert_error(client.get(f"{API}/workspaces/{handle}%00"), 404, "Workspace not found")


@pytest.mark.parametrize("role", ["assistant", "owner", "system", ""])
def test_only_the_user_role_is_accepted(client, role):
    conversation_id, token = visitor(client)
    response = post_message(client, conversation_id, token, "hi", role=role)
    assert "role" in assert_error(response, 422)["errors"]
    assert message_count(conversation_id) == 0
    assert post_message(client, conversation_id, token, "hi", role="user").status_code == 201


def test_non_object_body_is_a_client_error(client):
    conversation_id, token = visitor(client)
    url = f"{API}/conversations/{conversation_id}/messages"
    for raw in ("[1, 2]", '"hi"', "{bad"):
        response = client.post(
            url, data=raw, content_type="application/json", headers={"X-Visitor-Token": token}
        )
        assert 400 <= response.status_code < 500, (raw, response.status_code)
        assert response.mimetype == "application/json"
    assert message_count(conversation_id) == 0


def test_idempotency_key_replays_the_same_message_and_run(client):
    conversation_id, token = visitor(client)
    first = post_message(client, conversation_id, token, "Book me", idempotency_key="key-1")
    assert first.status_code == 201
    again = post_message(client, conversation_id, token, "  Book me ", idempotency_key="key-1")
    assert again.status_code == 200, again.get_data(as_text=True)
    a, b = first.get_json(), again.get_json()
    assert b["message"]["id"] == a["message"]["id"]
    assert b["run"]["id"] == a["run"]["id"]
    assert b["message"]["content"] == "Book me"
    assert message_count(conversation_id) == 1 and run_count(conversation_id) == 1

    # Another key, or no key, is a new message.
    assert post_message(client, conversation_id, token, "Book me", idempotency_key="key-2").status_code == 201
    assert post_message(client, conversation_id, token, "Book me").status_code == 201
    assert run_count(conversation_id) == 3


def test_idempotency_key_with_different_content_is_409(client):
    conversation_id, token = visitor(client)
    assert post_message(client, conversation_id, token, "first", idempotency_key="k").status_code == 201
    assert_error(post_message(client, conversation_id, token, "second", idempotency_key="k"), 409)
    assert message_count(conversation_id) == 1 and run_count(conversation_id) == 1


def test_idempotency_keys_are_per_conversation(client):
    workspace = make_workspace()
    conversation_a, token_a = visitor(client, workspace)
    conversation_b, token_b = visitor(client, workspace)
    a = post_message(client, conversation_a, token_a, "hi", idempotency_key="same")
    b = post_message(client, conversation_b, token_b, "hi", idempotency_key="same")
    assert a.status_code == b.status_code == 201
    assert a.get_json()["run"]["id"] != b.get_json()["run"]["id"]


def test_concurrent_posts_with_the_same_key_make_one_message_and_run(app):
    client = app.test_client()
    conversation_id, token = visitor(client)
    threads_count = 8

    def post(own_client):
        response = post_message(own_client, conversation_id, token, "Same message", idempotency_key="race")
        return response.status_code, response.get_json()

    results = run_concurrently(app, [post] * threads_count)
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * (threads_count - 1) + [201], results
    assert len({body["message"]["id"] for _, body in results}) == 1
    assert len({body["run"]["id"] for _, body in results}) == 1
    db.session.expire_all()
    assert message_count(conversation_id) == 1 and run_count(conversation_id) == 1


def test_concurrent_posts_without_key_all_land_in_order(app):
    client = app.test_client()
    conversation_id, token = visitor(client)
    threads_count = 6
    calls = [
        lambda own_client, i=i: post_message(own_client, conversation_id, token, f"message {i}").status_code
        for i in range(threads_count)
    ]
    statuses = run_concurrently(app, calls)
    assert statuses == [201] * threads_count
    listed = list_messages(client, conversation_id, token).get_json()["messages"]
    assert len(listed) == threads_count
    stamps = [parse_ts(m["timestamp"]) for m in listed]
    assert stamps == sorted(stamps) and len(set(stamps)) == threads_count
    # Runs are created in the order of their messages.
    runs = db.session.execute(
        select(AgentRun)
        .where(AgentRun.conversation_id == uuid.UUID(conversation_id))
        .order_by(AgentRun.created_at)
    ).scalars()
    assert [str(r.user_message_id) for r in runs] == [m["id"] for m in listed]


# --- listing messages ---------------------------------------------------------------------


def _conversation_with_messages(client, n: int, monkeypatch=None):
    """A public conversation holding n messages (all with the same wall-clock time when
    monkeypatch is given); returns (id, token, messages oldest first)."""
    conversation_id, token = visitor(client)
    conversation = db.session.get(Conversation, uuid.UUID(conversation_id))
    if monkeypatch is not None:
        frozen = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        monkeypatch.setattr(messages_service, "utcnow", lambda: frozen)
    created = [
        make_message(conversation, "user" if i % 2 == 0 else "assistant", f"message {i}") for i in range(n)
    ]
    if monkeypatch is not None:
        monkeypatch.undo()
    return conversation_id, token, created


def test_messages_are_listed_in_order(client):
    conversation_id, token, created = _conversation_with_messages(client, 4)
    body = list_messages(client, conversation_id, token).get_json()
    assert [m["id"] for m in body["messages"]] == [str(m.id) for m in created]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "assistant"]
    assert parse_ts(body["next_since"]) == created[-1].timestamp


def test_paging_with_next_since_returns_every_message_once(client, monkeypatch):
    conversation_id, token, created = _conversation_with_messages(client, 7, monkeypatch)
    stamps = [m.timestamp for m in created]
    assert len(set(stamps)) == 7 and stamps == sorted(stamps)

    seen, pages, since = [], [], None
    while True:
        query = {"limit": 3} if since is None else {"limit": 3, "since": since}
        response = list_messages(client, conversation_id, token, **query)
        assert response.status_code == 200, response.get_data(as_text=True)
        page = response.get_json()
        if not page["messages"]:
            assert page["next_since"] == since  # an empty page keeps the cursor
            break
        pages.append(len(page["messages"]))
        seen.extend(m["id"] for m in page["messages"])
        since = page["next_since"]
        assert len(pages) <= 4
    assert pages == [3, 3, 1]
    assert seen == [str(m.id) for m in created]


def test_since_is_exclusive_and_respects_offsets(client):
    conversation_id, token, created = _conversation_with_messages(client, 5)
    pivot = created[2].timestamp
    expected = [str(m.id) for m in created[3:]]

    def ids(since):
        response = list_messages(client, conversation_id, token, since=since)
        assert response.status_code == 200, (since, response.get_data(as_text=True))
        return [m["id"] for m in response.get_json()["messages"]]

    assert ids(pivot.isoformat()) == expected
    assert ids(pivot.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()) == expected
    assert ids(pivot.astimezone(timezone(timedelta(hours=-8))).isoformat()) == expected
    assert ids(pivot.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) == expected
    # A naive timestamp is UTC.
    assert ids(pivot.replace(tzinfo=None).isoformat()) == expected
    # "+" typed unencoded in a URL arrives as a space.
    raw = pivot.astimezone(timezone(timedelta(hours=2))).isoformat()
    response = client.get(
        f"{API}/conversations/{conversation_id}/messages?since={raw}", headers={"X-Visitor-Token": token}
    )
    assert [m["id"] for m in response.get_json()["messages"]] == expected
    # A moment before the first message returns everything; after the last, nothing.
    assert ids((created[0].timestamp - timedelta(microseconds=1)).isoformat()) == [str(m.id) for m in created]
    assert ids(created[-1].timestamp.isoformat()) == []


def test_limit_bounds(client):
    conversation_id, token, created = _conversation_with_messages(client, 3)
    for bad in (0, 201, -1, "many"):
        body = assert_error(list_messages(client, conversation_id, token, limit=bad), 422)
        assert "limit" in body["errors"]
    assert len(list_messages(client, conversation_id, token, limit=1).get_json()["messages"]) == 1
    assert len(list_messages(client, conversation_id, token, limit=200).get_json()["messages"]) == 3


def test_default_limit_is_50(client):
    conversation_id, token, _ = _conversation_with_messages(client, 55)
    assert len(list_messages(client, conversation_id, token).get_json()["messages"]) == 50


@pytest.mark.parametrize("since", ["yesterday", "2024-13-45T00:00:00Z", "1700000000", ""])
def test_malformed_since_is_422(client, since):
    conversation_id, token, _ = _conversation_with_messages(client, 1)
    response = list_messages(client, conversation_id, token, since=since)
    assert "since" in assert_error(response, 422)["errors"]


@pytest.mark.parametrize("since", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"])
def test_since_beyond_the_calendar_is_422(client, since):
    conversation_id, token, _ = _conversation_with_messages(client, 1)
    response = list_messages(client, conversation_id, token, since=since)
    assert "since" in assert_error(response, 422)["errors"]


def test_since_at_the_ends_of_the_calendar(client):
    conversation_id, token, created = _conversation_with_messages(client, 2)
    ids = [str(m.id) for m in created]
    assert [
        m["id"]
        for m in list_messages(client, conversation_id, token, since="0001-01-01T00:00:00Z").get_json()[
            "messages"
        ]
    ] == ids
    assert (
        list_messages(client, conversation_id, token, since="9999-12-31T23:59:59Z").get_json()["messages"]
        == []
    )


def test_listing_shows_only_this_conversation(client):
    workspace = make_workspace()
    conversation_id, token = visitor(client, workspace)
    other = make_conversation(workspace)
    make_message(other, "user", "not yours")
    post_message(client, conversation_id, token, "mine")
    listed = list_messages(client, conversation_id, token).get_json()["messages"]
    assert [m["content"] for m in listed] == ["mine"]


# --- runs -----------------------------------------------------------------------------------


def get_run(client, conversation_id, token, run_id):
    return client.get(
        f"{API}/conversations/{conversation_id}/runs/{run_id}", headers={"X-Visitor-Token": token}
    )


def cancel_run(client, conversation_id, token, run_id):
    return client.post(
        f"{API}/conversations/{conversation_id}/runs/{run_id}/cancel", headers={"X-Visitor-Token": token}
    )


def test_get_run(client):
    conversation_id, token = visitor(client)
    posted = post_message(client, conversation_id, token).get_json()
    response = get_run(client, conversation_id, token, posted["run"]["id"])
    assert response.status_code == 200
    run = response.get_json()
    assert run == posted["run"]
    assert set(run) == {
        "id",
        "conversation_id",
        "user_message_id",
        "status",
        "reply_message_id",
        "error",
        "degraded",
        "created_at",
        "started_at",
        "finished_at",
    }


def test_run_of_another_conversation_is_not_found(client):
    conversation_a, token_a = visitor(client)
    conversation_b, token_b = visitor(client)
    run_b = post_message(client, conversation_b, token_b).get_json()["run"]["id"]
    assert_error(get_run(client, conversation_a, token_a, run_b), 404, "Run not found")
    assert_error(cancel_run(client, conversation_a, token_a, run_b), 404, "Run not found")
    assert_error(get_run(client, conversation_a, token_a, uuid.uuid4()), 404, "Run not found")
    assert db.session.get(AgentRun, uuid.UUID(run_b)).status == "queued"


def _stream_entries(conversation_id) -> list[tuple[str, str, dict]]:
    return [
        (entry_id, fields["e"], json.loads(fields["d"]))
        for entry_id, fields in redis_client().xrange(stream_key(conversation_id))
    ]


def test_cancel_queued_run(client):
    conversation_id, token = visitor(client)
    run_id = post_message(client, conversation_id, token).get_json()["run"]["id"]
    response = cancel_run(client, conversation_id, token, run_id)
    assert response.status_code == 202, response.get_data(as_text=True)
    run = response.get_json()
    assert run["id"] == run_id and run["status"] == "cancelled"
    assert run["finished_at"] is not None
    assert get_run(client, conversation_id, token, run_id).get_json()["status"] == "cancelled"

    entries = _stream_entries(conversation_id)
    ends = [data for _, event, data in entries if event == "message_end"]
    assert len(ends) == 1
    assert ends[0]["run_id"] == run_id
    assert ends[0]["status"] == "cancelled"
    assert ends[0]["full_text"] == "" and ends[0]["degraded"] is False
    assert set(ends[0]) == {"run_id", "message_id", "full_text", "status", "degraded", "usage"}

    # Finished now: cancelling again is a conflict and publishes nothing.
    assert_error(cancel_run(client, conversation_id, token, run_id), 409)
    assert len(_stream_entries(conversation_id)) == len(entries)


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_cancel_finished_run_is_409(client, status):
    conversation_id, token = visitor(client)
    run_id = post_message(client, conversation_id, token).get_json()["run"]["id"]
    run = db.session.get(AgentRun, uuid.UUID(run_id))
    run.status, run.finished_at = status, datetime.now(UTC)
    db.session.commit()
    assert_error(cancel_run(client, conversation_id, token, run_id), 409)
    assert get_run(client, conversation_id, token, run_id).get_json()["status"] == status
    assert _stream_entries(conversation_id) == []


def test_cancel_running_run_flags_it(client):
    from backend.services.runs import cancel_requested

    conversation_id, token = visitor(client)
    run_id = post_message(client, conversation_id, token).get_json()["run"]["id"]
    run = db.session.get(AgentRun, uuid.UUID(run_id))
    run.status = "running"
    db.session.commit()
    response = cancel_run(client, conversation_id, token, run_id)
    assert response.status_code == 202
    assert response.get_json()["status"] == "running"  # the worker stops it and saves what it had
    assert cancel_requested(run_id)
    assert _stream_entries(conversation_id) == []


# --- rate limits ----------------------------------------------------------------------------


def limited_app(app: Flask, **overrides):
    """A second app with rate limiting on (config is read when the app is built)."""
    return build_app(app, RATELIMIT_ENABLED=True, **overrides)


def assert_429(response):
    assert_error(response, 429, "Too many requests")
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= 60
    return retry_after


def test_message_limit_is_per_conversation(app):
    with limited_app(app, PUBLIC_MESSAGE_RATE_LIMIT_PER_CONVERSATION="2/minute") as limited:
        client = limited.test_client()
        workspace = make_workspace()
        conversation_a, token_a = start_conversation(client, workspace.handle)
        conversation_b, token_b = start_conversation(client, workspace.handle)
        assert post_message(client, conversation_a, token_a, "one").status_code == 201
        assert post_message(client, conversation_a, token_a, "two").status_code == 201
        assert_429(post_message(client, conversation_a, token_a, "three"))
        assert message_count(conversation_a) == 2
        # Same client IP, another conversation: its own budget.
        assert post_message(client, conversation_b, token_b, "one").status_code == 201
        # Reading is not limited by the per-conversation message limit.
        assert list_messages(client, conversation_a, token_a).status_code == 200
    assert not limiter.enabled


def test_ip_limit_is_per_client_address(app):
    with limited_app(app, PUBLIC_RATE_LIMIT_PER_IP="3/minute") as limited:
        client = limited.test_client()
        workspace = make_workspace()
        here = {"REMOTE_ADDR": "10.1.1.1"}
        elsewhere = {"REMOTE_ADDR": "10.2.2.2"}
        url = f"{API}/workspaces/{workspace.handle}"
        for _ in range(3):
            assert client.get(url, environ_base=here).status_code == 200
        assert_429(client.get(url, environ_base=here))
        assert client.get(url, environ_base=elsewhere).status_code == 200


def test_conversation_creation_limit_per_ip(app):
    with limited_app(app, PUBLIC_CONVERSATION_RATE_LIMIT_PER_IP="2/minute") as limited:
        client = limited.test_client()
        workspace = make_workspace()
        body = {"workspace_handle": workspace.handle}
        here = {"REMOTE_ADDR": "10.3.3.3"}
        for _ in range(2):
            assert client.post(f"{API}/conversations", json=body, environ_base=here).status_code == 201
        assert_429(client.post(f"{API}/conversations", json=body, environ_base=here))
        other = client.post(f"{API}/conversations", json=body, environ_base={"REMOTE_ADDR": "10.4.4.4"})
        assert other.status_code == 201


def test_retry_after_tells_when_the_window_resets(app):
    with limited_app(app, PUBLIC_MESSAGE_RATE_LIMIT_PER_CONVERSATION="1/hour") as limited:
        client = limited.test_client()
        conversation_id, token = start_conversation(client, make_workspace().handle)
        assert post_message(client, conversation_id, token, "one").status_code == 201
        response = post_message(client, conversation_id, token, "two")
        assert_error(response, 429, "Too many requests")
        assert 3500 < int(response.headers["Retry-After"]) <= 3600


def test_requests_without_the_token_do_not_use_up_the_visitors_budget(app):
    with limited_app(app, PUBLIC_MESSAGE_RATE_LIMIT_PER_CONVERSATION="2/minute") as limited:
        client = limited.test_client()
        conversation_id, token = start_conversation(client, make_workspace().handle)
        for _ in range(4):  # someone who knows the id, but not the token
            assert_error(post_message(client, conversation_id, "guess"), 401)
        assert post_message(client, conversation_id, token, "one").status_code == 201
        assert post_message(client, conversation_id, token, "two").status_code == 201
        assert_429(post_message(client, conversation_id, token, "three"))
