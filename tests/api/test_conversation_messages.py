"""Messages the business logs from its other channels: GET/POST /conversations/{id}/messages
(role user/assistant/owner, an optional original timestamp kept as given, no agent run)."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from backend.extensions import db, redis_client
from backend.models import AgentRun
from backend.streams import stream_key
from tests.factories import auth_headers, make_conversation, make_message, make_user, make_workspace

BASE = "/api/v1/conversations"
CHANNELS = ("web", "instagram", "whatsapp", "sms", "messenger", "chatgpt", "phone")


def _log(client, conversation, owner, **body):
    return client.post(f"{BASE}/{conversation.id}/messages", json=body, headers=auth_headers(owner))


@pytest.mark.parametrize("channel", CHANNELS)
def test_logged_history_keeps_roles_and_timestamps_and_starts_no_run(client, channel):
    workspace = make_workspace()
    owner = workspace.owner
    response = client.post(
        f"{BASE}/workspaces/{workspace.id}",
        json={"channel": channel, "visitor_name": "Ana"},
        headers=auth_headers(owner),
    )
    assert response.status_code == 201
    conversation_id = response.get_json()["id"]
    history = [
        ("user", "Hi! Do you have space on Friday?", "2026-03-01T09:15:00+00:00"),
        ("assistant", "We do, at 10 or 15h.", "2026-03-01T09:15:30.250000+00:00"),
        ("owner", "I'll keep 10h for you, Ana.", "2026-03-01T11:20:00+02:00"),  # another offset
    ]
    for role, content, timestamp in history:
        response = client.post(
            f"{BASE}/{conversation_id}/messages",
            json={"role": role, "content": content, "timestamp": timestamp},
            headers=auth_headers(owner),
        )
        assert response.status_code == 201, response.get_json()
        body = response.get_json()
        assert (body["role"], body["content"], body["run_id"]) == (role, content, None)
        assert datetime.fromisoformat(body["timestamp"]) == datetime.fromisoformat(timestamp)
    assert db.session.scalar(select(func.count()).select_from(AgentRun)) == 0

    page = client.get(f"{BASE}/{conversation_id}/messages", headers=auth_headers(owner)).get_json()
    assert page["count"] == 3
    assert [(m["role"], m["content"]) for m in page["data"]] == [(r, c) for r, c, _ in history]
    # The old /messages/... route lists the same.
    old = client.get(
        f"/api/v1/messages/conversations/{conversation_id}", headers=auth_headers(owner)
    ).get_json()
    assert old == page
    conversation = client.get(f"{BASE}/{conversation_id}", headers=auth_headers(owner)).get_json()
    assert datetime.fromisoformat(conversation["last_message_at"]) == datetime(2026, 3, 1, 9, 20, tzinfo=UTC)

    # A message without a timestamp comes after the history, at the present time.
    response = client.post(
        f"{BASE}/{conversation_id}/messages",
        json={"role": "user", "content": "Thanks!"},
        headers=auth_headers(owner),
    )
    assert response.status_code == 201
    assert datetime.fromisoformat(response.get_json()["timestamp"]) > datetime.now(UTC) - timedelta(minutes=1)


def test_a_timestamp_not_after_the_latest_message_is_a_409_and_changes_nothing(client):
    workspace = make_workspace()
    conversation = make_conversation(workspace, channel="whatsapp")
    owner = workspace.owner
    assert (
        _log(
            client, conversation, owner, role="user", content="one", timestamp="2026-01-02T10:00:00Z"
        ).status_code
        == 201
    )
    for earlier in ("2026-01-02T10:00:00Z", "2026-01-02T09:59:59.999999Z", "2025-12-31T23:00:00-03:00"):
        response = _log(client, conversation, owner, role="user", content="late", timestamp=earlier)
        assert response.status_code == 409, earlier
        assert "later than the conversation's latest message" in response.get_json()["detail"]
    page = client.get(f"{BASE}/{conversation.id}/messages", headers=auth_headers(owner)).get_json()
    assert [m["content"] for m in page["data"]] == ["one"]
    # A live message (no timestamp given) in between: imports must come after it too.
    make_message(conversation, "user", "live now")
    response = _log(
        client, conversation, owner, role="assistant", content="x", timestamp="2026-01-02T11:00:00Z"
    )
    assert response.status_code == 409


def test_naive_timestamps_are_utc_and_future_ones_are_refused(client):
    workspace = make_workspace()
    conversation = make_conversation(workspace, channel="sms")
    response = _log(
        client, conversation, workspace.owner, role="user", content="hi", timestamp="2026-02-03T04:05:06"
    )
    assert response.status_code == 201
    assert datetime.fromisoformat(response.get_json()["timestamp"]) == datetime(
        2026, 2, 3, 4, 5, 6, tzinfo=UTC
    )
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = _log(client, conversation, workspace.owner, role="user", content="hi", timestamp=future)
    assert response.status_code == 422 and "timestamp" in response.get_json()["errors"]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"role": "system", "content": "x"}, "role"),
        ({"role": "visitor", "content": "x"}, "role"),
        ({"role": "user", "content": "   "}, "content"),
        ({"role": "user"}, "content"),
        ({"role": "user", "content": "x" * 10_001}, "content"),
        ({"role": "user", "content": "x", "timestamp": "yesterday"}, "timestamp"),
        ({"role": "user", "content": "x", "timestamp": 1700000000}, "timestamp"),
        ({"role": "user", "content": "x", "timestamp": "9999-12-31T23:59:59-23:59"}, "timestamp"),
    ],
)
def test_bad_logged_messages_are_422(client, body, field):
    workspace = make_workspace()
    conversation = make_conversation(workspace)
    response = _log(client, conversation, workspace.owner, **body)
    assert response.status_code == 422 and field in response.get_json()["errors"]


def test_role_defaults_to_owner_and_a_watching_visitor_sees_the_message(client):
    workspace = make_workspace()
    conversation = make_conversation(workspace, channel="web_public")
    response = _log(client, conversation, workspace.owner, content="Hello from the owner")
    assert response.status_code == 201 and response.get_json()["role"] == "owner"
    [(_id, fields)] = redis_client().xrange(stream_key(conversation.id))
    assert fields["e"] == "message"
    assert json.loads(fields["d"])["content"] == "Hello from the owner"


def test_other_owners_and_unknown_conversations(client):
    workspace = make_workspace()
    conversation = make_conversation(workspace)
    other = make_user()
    response = _log(client, conversation, other, role="user", content="x")
    assert response.status_code == 403 and response.get_json() == {"detail": "Not your workspace"}
    response = client.get(f"{BASE}/{conversation.id}/messages", headers=auth_headers(other))
    assert response.status_code == 403
    response = client.get(f"{BASE}/not-a-uuid/messages", headers=auth_headers(workspace.owner))
    assert response.status_code == 404 and response.get_json() == {"detail": "Conversation not found"}
    assert client.post(f"{BASE}/{conversation.id}/messages", json={"content": "x"}).status_code == 401
