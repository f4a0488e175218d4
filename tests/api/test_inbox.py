"""The owner's live inbox: tickets, access, the events derived from committed changes, where
a stream starts (Last-Event-ID, resync), and what happens when nobody listens or Redis is away."""

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis

from backend.extensions import db, redis_client
from backend.models import AgentRun, Conversation
from backend.services import dispatch, inbox, inbox_events, runs
from backend.streams import RunPublisher, StreamWriter, inbox_key, inbox_listening_key, stream_writer
from tests.api.test_public_stream import SSEReader
from tests.api.visitors import post_message, visitor
from tests.factories import auth_headers, make_conversation, make_user, make_workspace
from tests.helpers import assert_error

API = "/api/v1"
MAX_SECONDS = 3.0


@pytest.fixture(autouse=True)
def short_streams(app, monkeypatch):
    monkeypatch.setitem(app.config, "SSE_MAX_SECONDS", MAX_SECONDS)
    monkeypatch.setitem(app.config, "SSE_HEARTBEAT_SECONDS", 0.4)


@pytest.fixture
def owner():
    return make_user()


@pytest.fixture
def workspace(owner):
    return make_workspace(owner)


def ticket(client, user, workspace_id) -> str:
    response = client.post(f"{API}/workspaces/{workspace_id}/events/ticket", headers=auth_headers(user))
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["ticket"]


def open_inbox(client, workspace_id, *, user=None, ticket_value=None, cursor=None, via="header") -> SSEReader:
    url, headers = f"{API}/workspaces/{workspace_id}/events", {}
    query = []
    if ticket_value is not None:
        query.append(f"ticket={ticket_value}")
    if user is not None:
        headers.update(auth_headers(user))
    if cursor is not None and via == "header":
        headers["Last-Event-ID"] = cursor
    elif cursor is not None:
        query.append(f"last_event_id={cursor}")
    response = client.get(url + ("?" + "&".join(query) if query else ""), headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return SSEReader(response)


def names(reader: SSEReader) -> list[str]:
    return [e["event"] for e in reader.events]


def wait_for(reader: SSEReader, *expected: str) -> SSEReader:
    return reader.read_until(lambda r: names(r)[: len(expected)] == list(expected) or len(r.events) > 20)


# --- the ticket ----------------------------------------------------------------------------


def test_ticket_shape_and_single_use(client, owner, workspace):
    before = datetime.now(UTC)
    response = client.post(f"{API}/workspaces/{workspace.id}/events/ticket", headers=auth_headers(owner))
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"ticket", "expires_at"}
    expires = datetime.fromisoformat(body["expires_at"])
    assert before + timedelta(seconds=59) <= expires <= datetime.now(UTC) + timedelta(seconds=61)

    reader = open_inbox(client, workspace.id, ticket_value=body["ticket"])
    assert reader.response.mimetype == "text/event-stream"
    assert reader.response.headers["Cache-Control"] == "no-cache"
    assert reader.response.headers["X-Accel-Buffering"] == "no"
    reader.close()
    again = client.get(f"{API}/workspaces/{workspace.id}/events?ticket={body['ticket']}")
    assert_error(again, 401, "Invalid or expired ticket")


def test_expired_ticket_is_refused(client, app, owner, workspace, monkeypatch):
    monkeypatch.setitem(app.config, "INBOX_TICKET_SECONDS", 1)
    value = ticket(client, owner, workspace.id)
    time.sleep(1.2)
    assert_error(
        client.get(f"{API}/workspaces/{workspace.id}/events?ticket={value}"), 401, inbox.TICKET_ERROR
    )


def test_ticket_of_another_workspace_is_refused(client, owner, workspace):
    mine = ticket(client, owner, workspace.id)
    other_owner = make_user()
    theirs = make_workspace(other_owner)
    # Even its owner's ticket for one workspace does not open another.
    assert_error(client.get(f"{API}/workspaces/{theirs.id}/events?ticket={mine}"), 401, inbox.TICKET_ERROR)
    assert_error(client.get(f"{API}/workspaces/{workspace.id}/events?ticket={mine}"), 401)  # used up


@pytest.mark.parametrize("value", ["x", "a" * 5000, "%00%ff", "../../etc", "é"])
def test_made_up_tickets_are_401(client, workspace, value):
    assert_error(client.get(f"{API}/workspaces/{workspace.id}/events?ticket={value}"), 401)


def test_a_password_change_revokes_an_unused_ticket(client, owner, workspace):
    value = ticket(client, owner, workspace.id)
    owner.token_version += 1
    db.session.commit()
    assert_error(client.get(f"{API}/workspaces/{workspace.id}/events?ticket={value}"), 401)


def test_only_the_owner_and_superusers(client, owner, workspace):
    stranger = make_user()
    url = f"{API}/workspaces/{workspace.id}/events"
    assert_error(client.post(url + "/ticket", headers=auth_headers(stranger)), 403, "Not your workspace")
    assert_error(client.get(url, headers=auth_headers(stranger)), 403, "Not your workspace")
    assert_error(client.get(url), 401, "Not authenticated")
    assert_error(client.post(url + "/ticket"), 401, "Not authenticated")
    unknown = f"{API}/workspaces/{uuid.uuid4()}/events"
    assert_error(client.post(unknown + "/ticket", headers=auth_headers(owner)), 404, "Workspace not found")
    assert_error(client.get(unknown, headers=auth_headers(owner)), 404, "Workspace not found")
    assert_error(client.get(f"{API}/workspaces/not-a-uuid/events", headers=auth_headers(owner)), 404)

    admin = make_user(is_superuser=True)
    reader = open_inbox(client, workspace.id, ticket_value=ticket(client, admin, workspace.id))
    visitor(client, workspace)
    wait_for(reader, "conversation.created")
    reader.close()


def test_bearer_header_instead_of_a_ticket(client, owner, workspace):
    reader = open_inbox(client, workspace.id, user=owner)
    visitor(client, workspace)
    wait_for(reader, "conversation.created")
    reader.close()


def test_invalid_cursor_is_422(client, owner, workspace):
    response = client.get(
        f"{API}/workspaces/{workspace.id}/events?last_event_id=abc", headers=auth_headers(owner)
    )
    assert_error(response, 422)


# --- the events ----------------------------------------------------------------------------


def test_a_visitor_chat_and_the_owner_in_order(client, owner, workspace):
    reader = open_inbox(client, workspace.id, ticket_value=ticket(client, owner, workspace.id))
    conversation_id, token = visitor(client, workspace, visitor_name="Ana")
    posted = post_message(client, conversation_id, token, "Is Friday free?").get_json()
    run_id = uuid.UUID(posted["run"]["id"])
    runs.claim_run(run_id)
    runs.finish_run(run_id, runs.Outcome("completed", "Yes, Friday works.", {}, degraded=True))
    owner_post = client.post(
        f"{API}/conversations/{conversation_id}/messages",
        json={"role": "owner", "content": "See you then!"},
        headers=auth_headers(owner),
    )
    assert owner_post.status_code == 201, owner_post.get_data(as_text=True)
    client.patch(
        f"{API}/conversations/{conversation_id}",
        json={"status": "closed", "tags": ["vip"]},
        headers=auth_headers(owner),
    )
    expected = [
        "conversation.created",
        "message.created",
        "run.started",
        "message.created",
        "run.finished",
        "message.created",
        "conversation.updated",
    ]
    wait_for(reader, *expected)
    assert names(reader) == expected
    reader.close()
    created, user_msg, started, reply, finished, owner_msg, updated = (e["data"] for e in reader.events)
    assert all(e["data"]["conversation_id"] == conversation_id for e in reader.events)
    assert created == {
        "conversation_id": conversation_id,
        "channel": "web_public",
        "status": "active",
        "agent_mode": "auto",
        "visitor_name": "Ana",
        "visitor_email": None,
        "tags": [],
        "created_at": created["created_at"],
    }
    assert (
        user_msg["role"] == "user" and user_msg["content"] == "Is Friday free?" and user_msg["run_id"] is None
    )
    assert user_msg["message_id"] == posted["message"]["id"] and user_msg["truncated"] is False
    assert started["run_id"] == str(run_id) and started["user_message_id"] == posted["message"]["id"]
    assert reply["role"] == "assistant" and reply["content"] == "Yes, Friday works."
    assert reply["run_id"] == str(run_id) and reply["message_id"] == str(runs.reply_message_id(run_id))
    assert finished["status"] == "completed" and finished["degraded"] is True
    assert finished["reply_message_id"] == reply["message_id"] and finished["error_code"] is None
    assert owner_msg["role"] == "owner" and owner_msg["content"] == "See you then!"
    assert updated["changes"] == {"status": "closed", "tags": ["vip"]}
    assert updated["agent_mode"] == "auto" and updated["deleted"] is False
    ids = [e["id"] for e in reader.events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))


def test_cancelled_run_and_handoff_and_takeover(client, owner, workspace):
    conversation_id = make_conversation(workspace).id
    reader = open_inbox(client, workspace.id, user=owner)  # (ends the test's session)
    conversation = db.session.get(Conversation, conversation_id)
    conversation.handoff_requested_at = datetime.now(UTC)
    conversation.handoff_reason = "Wants to talk about pricing"
    conversation.agent_mode = "paused"
    db.session.commit()
    wait_for(reader, "handoff.requested", "conversation.updated")
    handoff, updated = (e["data"] for e in reader.events)
    assert handoff["reason"] == "Wants to talk about pricing" and handoff["requested_at"]
    assert updated["agent_mode"] == "paused"
    assert set(updated["changes"]) == {"handoff_requested_at", "handoff_reason", "agent_mode"}

    conversation = db.session.get(Conversation, conversation_id)
    conversation.handoff_requested_at = None
    conversation.agent_mode = "auto"
    db.session.commit()
    reader.read_until(lambda r: len(r.events) == 3)
    assert reader.events[2]["event"] == "conversation.updated"  # released: no second handoff
    assert reader.events[2]["data"]["changes"] == {"handoff_requested_at": None, "agent_mode": "auto"}
    reader.close()


def test_a_cancelled_queued_run_finishes_and_a_delete_is_announced(client, owner, workspace):
    conversation_id, token = visitor(client, workspace)
    run_id = post_message(client, conversation_id, token).get_json()["run"]["id"]
    reader = open_inbox(client, workspace.id, user=owner)
    cancel = client.post(
        f"{API}/public/conversations/{conversation_id}/runs/{run_id}/cancel",
        headers={"X-Visitor-Token": token},
    )
    assert cancel.status_code == 202
    wait_for(reader, "run.finished")
    assert reader.events[0]["data"]["status"] == "cancelled"
    assert (
        client.delete(f"{API}/conversations/{conversation_id}", headers=auth_headers(owner)).status_code
        == 200
    )
    reader.read_until(lambda r: len(r.events) == 2)
    assert reader.events[1]["event"] == "conversation.updated"
    assert reader.events[1]["data"] == {
        "conversation_id": conversation_id,
        "changes": {},
        "agent_mode": "auto",
        "deleted": True,
    }
    reader.close()


def test_long_messages_are_previews(client, owner, workspace):
    conversation_id = make_conversation(workspace).id
    reader = open_inbox(client, workspace.id, user=owner)
    content = "word " * 500
    client.post(
        f"{API}/conversations/{conversation_id}/messages",
        json={"role": "owner", "content": content},
        headers=auth_headers(owner),
    )
    wait_for(reader, "message.created")
    data = reader.events[0]["data"]
    assert data["truncated"] is True and data["content"] == content.strip()[: inbox_events.PREVIEW_CHARS]
    reader.close()


def test_rollback_emits_nothing(owner, workspace):
    inbox.mark_listening(workspace.id)
    db.session.add(Conversation(workspace_id=workspace.id, channel="web", status="active", tags=[]))
    db.session.flush()
    db.session.rollback()
    make_conversation(workspace)  # a later commit sends only its own event
    entries = redis_client().xrange(inbox_key(workspace.id))
    assert [fields["e"] for _id, fields in entries] == ["conversation.created"]


def test_nobody_listening_writes_nothing(client, workspace):
    conversation_id, token = visitor(client, workspace)
    post_message(client, conversation_id, token)
    assert redis_client().exists(inbox_key(workspace.id)) == 0
    assert redis_client().exists(inbox_listening_key(workspace.id)) == 0


def test_events_of_other_workspaces_do_not_show(client, owner, workspace):
    reader = open_inbox(client, workspace.id, user=owner)
    other = make_workspace(make_user())
    inbox.mark_listening(other.id)
    visitor(client, other)
    visitor(client, workspace)
    wait_for(reader, "conversation.created")
    time.sleep(0.3)
    reader.pull()
    assert len(reader.events) == 1
    reader.close()


# --- where a stream starts ---------------------------------------------------------------------


@pytest.mark.parametrize("via", ["header", "query"])
def test_resumes_after_last_event_id(client, owner, workspace, via):
    reader = open_inbox(client, workspace.id, user=owner)
    visitor(client, workspace)
    wait_for(reader, "conversation.created")
    reader.close()
    cursor = reader.events[0]["id"]
    second, _ = visitor(client, workspace)  # while disconnected
    third, _ = visitor(client, workspace)
    resumed = open_inbox(client, workspace.id, user=owner, cursor=cursor, via=via)
    resumed.read_until(lambda r: len(r.events) == 2)
    assert [e["data"]["conversation_id"] for e in resumed.events] == [second, third]
    resumed.close()


def test_resync_when_the_cursor_is_lost(client, owner, workspace):
    reader = open_inbox(client, workspace.id, user=owner)
    visitor(client, workspace)
    wait_for(reader, "conversation.created")
    reader.close()
    redis_client().delete(inbox_key(workspace.id))  # expired while the owner was away
    resumed = open_inbox(client, workspace.id, user=owner, cursor=reader.events[0]["id"])
    resumed.read_until(lambda r: r.events)
    assert resumed.events[0]["event"] == "resync"
    assert resumed.events[0]["data"] == {"reason": "cursor_expired"}
    later, _ = visitor(client, workspace)
    resumed.read_until(lambda r: len(r.events) == 2)
    assert resumed.events[1]["data"]["conversation_id"] == later
    resumed.close()


def test_resync_when_nobody_listened_meanwhile(client, owner, workspace):
    reader = open_inbox(client, workspace.id, user=owner)
    visitor(client, workspace)
    wait_for(reader, "conversation.created")
    reader.close()
    redis_client().delete(inbox_listening_key(workspace.id))  # the mark lapsed: events were skipped
    visitor(client, workspace)
    resumed = open_inbox(client, workspace.id, user=owner, cursor=reader.events[0]["id"])
    resumed.read_until(lambda r: r.events)
    assert resumed.events[0]["event"] == "resync"
    resumed.close()


# --- Redis away, the worker's batch -------------------------------------------------------------


def test_redis_away_loses_events_not_requests(client, owner, workspace, monkeypatch, caplog):
    inbox.mark_listening(workspace.id)

    def down(*_args, **_kwargs):
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379")

    monkeypatch.setattr(inbox_events, "queue_inbox_writes", down)
    conversation = make_conversation(workspace)
    with caplog.at_level(logging.WARNING, logger="backend.services.inbox_events"):
        response = client.post(
            f"{API}/conversations/{conversation.id}/messages",
            json={"role": "owner", "content": "Still here"},
            headers=auth_headers(owner),
        )
    assert response.status_code == 201
    assert any("Redis is unreachable" in r.getMessage() for r in caplog.records)


def test_in_a_worker_task_events_go_with_the_stream_writers_batch(owner, workspace, monkeypatch):
    inbox.mark_listening(workspace.id)
    monkeypatch.setattr(inbox_events, "_in_worker_task", lambda: True)
    sent = []
    writer = stream_writer()
    original = writer.queue_inbox
    monkeypatch.setattr(writer, "queue_inbox", lambda writes: sent.append(writes) or original(writes))
    conversation = make_conversation(workspace)
    assert len(sent) == 1 and sent[0][0][0] == str(workspace.id)
    deadline = time.monotonic() + 5
    while not redis_client().xlen(inbox_key(workspace.id)):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    (_id, fields), *_ = redis_client().xrange(inbox_key(workspace.id))
    assert fields["e"] == "conversation.created" and str(conversation.id) in fields["d"]


def test_a_run_started_by_the_worker_claims_once(client, owner, workspace):
    conversation_id, token = visitor(client, workspace)
    run_id = uuid.UUID(post_message(client, conversation_id, token).get_json()["run"]["id"])
    inbox.mark_listening(workspace.id)
    assert runs.claim_run(run_id) is not None
    assert runs.claim_run(run_id) is None  # a redelivered task: no second run.started
    entries = redis_client().xrange(inbox_key(workspace.id))
    assert [fields["e"] for _id, fields in entries] == ["run.started"]
    assert db.session.get(AgentRun, run_id).status == "running"


def test_in_a_worker_task_run_events_ride_with_the_runs_own_writes(client, owner, workspace, monkeypatch):
    """run.started waits for the run's message_start round trip, run.finished (with the reply)
    for its message_end: no round trip of their own."""
    conversation_id, token = visitor(client, workspace)
    run_id = uuid.UUID(post_message(client, conversation_id, token).get_json()["run"]["id"])
    inbox.mark_listening(workspace.id)
    monkeypatch.setattr(inbox_events, "_in_worker_task", lambda: True)
    monkeypatch.setattr(StreamWriter, "INBOX_MAX_WAIT", 30.0)  # only a run's write sends them
    key = inbox_key(workspace.id)
    claim = runs.claim_run(run_id)
    assert redis_client().xlen(key) == 0  # queued, not sent
    publisher = RunPublisher(conversation_id, run_id, claim.reply_message_id, batched=True)
    publisher.message_start()
    assert [f["e"] for _id, f in redis_client().xrange(key)] == ["run.started"]
    publisher.delta("Hi")
    dispatch.finish(run_id, claim.conversation_id, runs.Outcome("completed", "Hi", {}), publisher)
    assert [f["e"] for _id, f in redis_client().xrange(key)] == [
        "run.started",
        "message.created",
        "run.finished",
    ]
