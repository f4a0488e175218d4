"""Conversations (owner side): CRUD, filters, ordering, paging, cascade on delete."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from backend.extensions import db, redis_client
from backend.models import AgentRun, Conversation, ConversationMessage
from backend.streams import stream_key
from tests.factories import auth_headers, make_conversation, make_message, make_user, make_workspace

BASE = "/api/v1/conversations"


def _list(client, workspace, query="", headers=None):
    response = client.get(
        f"{BASE}/workspaces/{workspace.id}{query}", headers=headers or auth_headers(workspace.owner)
    )
    assert response.status_code == 200, response.json
    return response.json


def test_create_get_patch_delete(client):
    workspace = make_workspace()
    headers = auth_headers(workspace.owner)
    body = {
        "visitor_name": "Ana",
        "visitor_email": "ana@example.com",
        "channel": "whatsapp",
        "tags": ["vip", " lead ", "vip", ""],
        "human_time_saved_minutes": 5,
        "visitor_token": "ignored",
    }
    created = client.post(f"{BASE}/workspaces/{workspace.id}", json=body, headers=headers)
    assert created.status_code == 201, created.json
    conversation = created.json
    assert conversation["tags"] == ["vip", "lead"]
    assert conversation["status"] == "active" and conversation["channel"] == "whatsapp"
    assert conversation["last_message_at"] is None
    assert "visitor_token" not in conversation and "visitor_token_hash" not in conversation
    stored = db.session.get(Conversation, conversation["id"])
    assert stored.visitor_token_hash is None
    assert client.get(f"{BASE}/{conversation['id']}", headers=headers).json == conversation
    patched = client.patch(
        f"{BASE}/{conversation['id']}",
        json={"status": "closed", "tags": [], "visitor_name": None},
        headers=headers,
    )
    assert patched.status_code == 200
    assert (patched.json["status"], patched.json["tags"], patched.json["visitor_name"]) == (
        "closed",
        [],
        None,
    )
    deleted = client.delete(f"{BASE}/{conversation['id']}", headers=headers)
    assert deleted.json == {"message": "Conversation deleted successfully"}
    missing = client.get(f"{BASE}/{conversation['id']}", headers=headers)
    assert missing.status_code == 404 and missing.json == {"detail": "Conversation not found"}


def test_defaults(client):
    workspace = make_workspace()
    created = client.post(f"{BASE}/workspaces/{workspace.id}", json={}, headers=auth_headers(workspace.owner))
    assert created.status_code == 201
    assert (created.json["channel"], created.json["status"], created.json["tags"]) == ("web", "active", [])
    assert created.json["human_time_saved_minutes"] == 0


@pytest.mark.parametrize(
    "field,value",
    [
        ("channel", "fax"),
        ("status", "deleted"),
        ("tags", "vip"),
        ("tags", [1]),
        ("tags", ["x" * 51]),
        ("tags", [f"t{i}" for i in range(21)]),
        ("visitor_email", "not-an-email"),
        ("human_time_saved_minutes", -1),
        ("human_time_saved_minutes", 2**31),
    ],
)
def test_invalid_fields_are_422(client, field, value):
    workspace = make_workspace()
    response = client.post(
        f"{BASE}/workspaces/{workspace.id}", json={field: value}, headers=auth_headers(workspace.owner)
    )
    assert response.status_code == 422
    assert field in response.json["errors"]
    # field name -> list of plain messages, never nested by list index
    assert all(isinstance(m, str) for msgs in response.json["errors"].values() for m in msgs)


def test_delete_cascades_to_messages_and_runs(client):
    workspace = make_workspace()
    conversation = make_conversation(workspace)
    question = make_message(conversation, "user", "Hi")
    reply = make_message(conversation, "assistant", "Hello!")
    db.session.add(
        AgentRun(
            conversation_id=conversation.id,
            user_message_id=question.id,
            reply_message_id=reply.id,
            status="completed",
        )
    )
    db.session.commit()
    redis_client().xadd(stream_key(conversation.id), {"e": "message_start", "d": "{}"})
    response = client.delete(f"{BASE}/{conversation.id}", headers=auth_headers(workspace.owner))
    assert response.status_code == 200
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(ConversationMessage)) == 0
    assert db.session.scalar(select(func.count()).select_from(AgentRun)) == 0
    assert not redis_client().exists(stream_key(conversation.id))


def test_order_newest_activity_first_without_messages_last(client):
    workspace = make_workspace()
    now = datetime.now(UTC)
    old = make_conversation(workspace, last_message_at=now - timedelta(days=2))
    recent = make_conversation(workspace, last_message_at=now - timedelta(hours=1))
    empty_old = make_conversation(workspace, created_at=now - timedelta(days=5))
    empty_new = make_conversation(workspace, created_at=now - timedelta(days=1))
    page = _list(client, workspace)
    assert [c["id"] for c in page["data"]] == [str(c.id) for c in (recent, old, empty_new, empty_old)]
    assert page["count"] == 4
    second = _list(client, workspace, "?skip=1&limit=2")
    assert [c["id"] for c in second["data"]] == [str(old.id), str(empty_new.id)]
    assert second["count"] == 4


def test_filters(client):
    workspace = make_workspace()
    other = make_workspace()
    now = datetime.now(UTC)
    a = make_conversation(
        workspace, status="active", channel="web", tags=["vip", "lead"], visitor_name="Zoë Adams"
    )
    b = make_conversation(
        workspace, status="closed", channel="sms", tags=["lead"], visitor_email="BOB@Example.com"
    )
    c = make_conversation(
        workspace, status="archived", channel="web", tags=[], created_at=now - timedelta(days=9)
    )
    make_message(a, "user", "Do you have a 50% discount_code?", timestamp=now - timedelta(days=3))
    make_message(b, "assistant", "We open at NINE o'clock", timestamp=now - timedelta(minutes=5))
    make_conversation(other, status="closed", channel="sms", tags=["vip"], visitor_name="Zoë Adams")

    def ids(query):
        return {item["id"] for item in _list(client, workspace, query)["data"]}

    assert ids("?status=closed") == {str(b.id)}
    assert ids("?channel=web") == {str(a.id), str(c.id)}
    assert ids("?tag=vip") == {str(a.id)}
    assert ids("?tag=lead") == {str(a.id), str(b.id)}
    assert ids("?tag=le") == set()
    assert ids("?q=zoë") == {str(a.id)}
    assert ids("?q=bob@example") == {str(b.id)}
    assert ids("?q=nine O'CLOCK") == {str(b.id)}
    assert ids("?q=50%25") == {str(a.id)}  # a literal %, not a wildcard
    assert ids("?q=nine_o") == set()  # a literal _, not a wildcard ("nine o" exists)
    assert ids("?q=discount_code") == {str(a.id)}
    assert ids("?q=nothing-like-this") == set()
    since = (now - timedelta(days=1)).isoformat()
    assert ids(f"?since={since.replace('+', '%2B')}") == {str(b.id)}
    assert ids(f"?since={since}") == {str(b.id)}  # an unencoded + arrives as a space
    assert ids("?since=" + (now - timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%SZ")) == {str(a.id), str(b.id)}
    assert ids("?since=" + (now - timedelta(days=10)).date().isoformat()) == {str(a.id), str(b.id), str(c.id)}
    assert ids("?status=closed&channel=sms&tag=lead&q=nine") == {str(b.id)}
    assert _list(client, workspace, "?tag=lead&limit=1")["count"] == 2


@pytest.mark.parametrize(
    "query",
    ["?status=open", "?channel=fax", "?since=yesterday", "?limit=1001", "?limit=-1", "?skip=x", "?q="],
)
def test_bad_query_is_422(client, query):
    workspace = make_workspace()
    response = client.get(f"{BASE}/workspaces/{workspace.id}{query}", headers=auth_headers(workspace.owner))
    assert response.status_code == 422
    assert response.json["detail"] == "Validation error" and response.json["errors"]


def test_limit_1000_is_allowed(client):
    workspace = make_workspace()
    make_conversation(workspace)
    assert _list(client, workspace, "?limit=1000")["count"] == 1


def test_other_owner_is_forbidden_and_superuser_allowed(client):
    workspace = make_workspace()
    conversation = make_conversation(workspace)
    other = auth_headers(make_user())
    for response in (
        client.get(f"{BASE}/{conversation.id}", headers=other),
        client.patch(f"{BASE}/{conversation.id}", json={"status": "closed"}, headers=other),
        client.delete(f"{BASE}/{conversation.id}", headers=other),
        client.get(f"{BASE}/workspaces/{workspace.id}", headers=other),
    ):
        assert response.status_code == 403 and response.json == {"detail": "Not your workspace"}
    admin = auth_headers(make_user(is_superuser=True))
    assert _list(client, workspace, headers=admin)["count"] == 1


def test_status_completed_is_accepted_and_filterable(client):
    workspace = make_workspace()
    conversation = make_conversation(workspace)
    headers = auth_headers(workspace.owner)
    response = client.patch(f"{BASE}/{conversation.id}", json={"status": "completed"}, headers=headers)
    assert response.status_code == 200 and response.json["status"] == "completed"
    created = client.post(
        f"{BASE}/workspaces/{workspace.id}", json={"status": "completed", "channel": "sms"}, headers=headers
    )
    assert created.status_code == 201 and created.json["status"] == "completed"
    listed = client.get(f"{BASE}/workspaces/{workspace.id}?status=completed", headers=headers).json
    assert listed["count"] == 2
