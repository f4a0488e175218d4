"""Messages (owner side): owner-written messages, ordering, paging, delete, not found."""

from sqlalchemy import select

from backend.extensions import db
from backend.models import AgentRun, Conversation
from tests.factories import auth_headers, make_conversation, make_message, make_user, make_workspace

BASE = "/api/v1/messages"


def test_owner_posts_with_role_owner_and_last_message_at_moves(client):
    workspace = make_workspace()
    conversation = make_conversation(workspace)
    make_message(conversation, "user", "Hi")
    headers = auth_headers(workspace.owner)
    created = client.post(
        f"{BASE}/conversations/{conversation.id}",
        json={"content": "  Hello from the owner  "},
        headers=headers,
    )
    assert created.status_code == 201, created.json
    message = created.json
    assert set(message) == {
        "id",
        "conversation_id",
        "role",
        "content",
        "timestamp",
        "created_at",
        "run_id",
        "meta",
    }
    assert (message["role"], message["content"], message["run_id"], message["meta"]) == (
        "owner",
        "Hello from the owner",
        None,
        {},
    )
    db.session.expire_all()
    stored = db.session.get(Conversation, conversation.id)
    assert stored.last_message_at.isoformat() == message["timestamp"]
    fetched = client.get(f"{BASE}/{message['id']}", headers=headers)
    assert fetched.json == message


def test_role_other_than_owner_is_refused(client):
    workspace = make_workspace()
    conversation = make_conversation(workspace)
    headers = auth_headers(workspace.owner)
    for role in ("assistant", "user"):
        response = client.post(
            f"{BASE}/conversations/{conversation.id}", json={"content": "x", "role": role}, headers=headers
        )
        assert response.status_code == 422 and "role" in response.json["errors"]
    ok = client.post(
        f"{BASE}/conversations/{conversation.id}", json={"content": "x", "role": "owner"}, headers=headers
    )
    assert ok.status_code == 201


def test_content_validation(client):
    workspace = make_workspace()
    conversation = make_conversation(workspace)
    headers = auth_headers(workspace.owner)
    for body in ({}, {"content": ""}, {"content": "   "}, {"content": "x" * 10_001}, {"content": 5}):
        response = client.post(f"{BASE}/conversations/{conversation.id}", json=body, headers=headers)
        assert response.status_code == 422 and "content" in response.json["errors"]


def test_list_is_ordered_and_paged_with_strictly_increasing_timestamps(client):
    workspace = make_workspace()
    conversation = make_conversation(workspace)
    headers = auth_headers(workspace.owner)
    for i in range(7):
        client.post(f"{BASE}/conversations/{conversation.id}", json={"content": f"m{i}"}, headers=headers)
    page = client.get(f"{BASE}/conversations/{conversation.id}", headers=headers).json
    assert [m["content"] for m in page["data"]] == [f"m{i}" for i in range(7)] and page["count"] == 7
    stamps = [m["timestamp"] for m in page["data"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 7
    part = client.get(f"{BASE}/conversations/{conversation.id}?skip=2&limit=3", headers=headers).json
    assert [m["content"] for m in part["data"]] == ["m2", "m3", "m4"] and part["count"] == 7


def test_delete_message_and_its_run(client):
    workspace = make_workspace()
    conversation = make_conversation(workspace)
    question = make_message(conversation, "user", "Hi")
    reply = make_message(conversation, "assistant", "Hello")
    run = AgentRun(conversation_id=conversation.id, user_message_id=question.id, reply_message_id=reply.id)
    db.session.add(run)
    db.session.commit()
    run_id = run.id
    headers = auth_headers(workspace.owner)
    assert client.delete(f"{BASE}/{reply.id}", headers=headers).json == {
        "message": "Message deleted successfully"
    }
    db.session.expire_all()
    assert db.session.get(AgentRun, run_id).reply_message_id is None
    assert client.delete(f"{BASE}/{question.id}", headers=headers).status_code == 200
    assert db.session.scalars(select(AgentRun)).first() is None
    missing = client.get(f"{BASE}/{question.id}", headers=headers)
    assert missing.status_code == 404 and missing.json == {"detail": "Message not found"}
    assert client.get(f"{BASE}/nope", headers=headers).json == {"detail": "Message not found"}


def test_unknown_conversation_and_other_owner(client):
    workspace = make_workspace()
    conversation = make_conversation(workspace)
    message = make_message(conversation)
    headers = auth_headers(workspace.owner)
    unknown = client.post(
        f"{BASE}/conversations/00000000-0000-0000-0000-000000000000", json={"content": "x"}, headers=headers
    )
    assert unknown.status_code == 404 and unknown.json == {"detail": "Conversation not found"}
    other = auth_headers(make_user())
    for response in (
        client.get(f"{BASE}/{message.id}", headers=other),
        client.delete(f"{BASE}/{message.id}", headers=other),
        client.get(f"{BASE}/conversations/{conversation.id}", headers=other),
        client.post(f"{BASE}/conversations/{conversation.id}", json={"content": "x"}, headers=other),
    ):
        assert response.status_code == 403 and response.json == {"detail": "Not your workspace"}


def test_an_owner_message_reaches_the_visitors_event_stream(client):
    import json

    from backend.extensions import redis_client
    from backend.streams import stream_key

    workspace = make_workspace()
    conversation = make_conversation(workspace)
    created = client.post(
        f"{BASE}/conversations/{conversation.id}",
        json={"content": "We have a slot at 5pm today"},
        headers=auth_headers(workspace.owner),
    ).json
    [(_, fields)] = redis_client().xrange(stream_key(conversation.id))
    assert fields["e"] == "message"
    assert json.loads(fields["d"]) == {
        "message_id": created["id"],
        "role": "owner",
        "content": "We have a slot at 5pm today",
        "timestamp": created["timestamp"],
    }
    assert redis_client().ttl(stream_key(conversation.id)) > 3600
