"""Takeover and release (owner side) and what a visitor sees of them: runs stopped,
messages saved without runs, `agent_mode` events; concurrent takeovers and a release
racing a visitor's post. The run loop's side (tool request_human) is in tests/agent."""

import json
from datetime import datetime

from sqlalchemy import select

from backend.extensions import db, redis_client
from backend.models import AgentRun, Conversation
from backend.models.types import utcnow
from backend.services import runs
from backend.streams import cancel_key, stream_key
from tests.api.visitors import list_messages, post_message, visitor
from tests.concurrency import run_concurrently
from tests.factories import auth_headers, make_user, make_workspace

BASE = "/api/v1/conversations"


def _events(conversation_id, name=None) -> list[dict]:
    entries = redis_client().xrange(stream_key(conversation_id))
    return [
        {"event": fields["e"], **json.loads(fields["d"])}
        for _, fields in entries
        if name is None or fields["e"] == name
    ]


def _takeover(client, workspace, conversation_id):
    return client.post(f"{BASE}/{conversation_id}/takeover", headers=auth_headers(workspace.owner))


def _release(client, workspace, conversation_id):
    return client.post(f"{BASE}/{conversation_id}/release", headers=auth_headers(workspace.owner))


def _runs(conversation_id) -> list[AgentRun]:
    db.session.expire_all()
    return list(
        db.session.execute(
            select(AgentRun).where(AgentRun.conversation_id == conversation_id).order_by(AgentRun.created_at)
        ).scalars()
    )


def test_takeover_pauses_the_agent_and_visitor_messages_start_no_run(client):
    workspace = make_workspace()
    conversation_id, token = visitor(client, workspace)

    response = _takeover(client, workspace, conversation_id)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["id"] == conversation_id and body["agent_mode"] == "paused"
    assert body["handoff_requested_at"] is None and body["handoff_reason"] is None

    posted = post_message(client, conversation_id, token, "Is anyone there?")
    assert posted.status_code == 201, posted.json
    assert posted.json["run"] is None
    assert posted.json["message"]["content"] == "Is anyone there?"
    assert posted.json["stream_cursor"] == _last_entry_id(conversation_id)
    assert _runs(conversation_id) == []
    # The same idempotent post again replays it, still without a run.
    again = post_message(client, conversation_id, token, "Ping", idempotency_key="k1")
    replay = post_message(client, conversation_id, token, "Ping", idempotency_key="k1")
    assert (again.status_code, replay.status_code) == (201, 200)
    assert replay.json["run"] is None and replay.json["message"]["id"] == again.json["message"]["id"]

    assert _events(conversation_id, "agent_mode") == [
        {"event": "agent_mode", "mode": "paused", "by": "owner"}
    ]
    page = list_messages(client, conversation_id, token)
    assert page.json["agent_mode"] == "paused" and len(page.json["messages"]) == 2


def _last_entry_id(conversation_id) -> str:
    entries = redis_client().xrevrange(stream_key(conversation_id), count=1)
    return entries[0][0]


def test_takeover_cancels_queued_runs_and_flags_the_running_one(client):
    workspace = make_workspace()
    conversation_id, token = visitor(client, workspace)
    first = post_message(client, conversation_id, token, "first").json["run"]["id"]
    second = post_message(client, conversation_id, token, "second").json["run"]["id"]
    claimed = runs.claim_run(first)  # a worker is streaming the first run's reply
    assert claimed is not None

    assert _takeover(client, workspace, conversation_id).status_code == 200

    by_id = {str(run.id): run for run in _runs(conversation_id)}
    assert by_id[first].status == "running"  # its worker stops it and keeps the partial reply
    assert redis_client().get(cancel_key(first)) == "1"
    assert by_id[second].status == "cancelled" and by_id[second].finished_at is not None
    ends = _events(conversation_id, "message_end")
    assert [(e["run_id"], e["status"]) for e in ends] == [(second, "cancelled")]
    # Then the mode change; a takeover of a paused conversation announces nothing new.
    assert _events(conversation_id)[-1] == {"event": "agent_mode", "mode": "paused", "by": "owner"}
    redis_client().delete(cancel_key(first))
    assert _takeover(client, workspace, conversation_id).status_code == 200
    assert len(_events(conversation_id, "agent_mode")) == 1
    assert redis_client().get(cancel_key(first)) == "1"  # flagged again: a retry still stops it


def test_release_hands_back_closes_the_request_and_the_next_message_starts_a_run(client):
    workspace = make_workspace()
    conversation_id, token = visitor(client, workspace)
    conversation = db.session.get(Conversation, conversation_id)
    conversation.handoff_requested_at, conversation.handoff_reason = utcnow(), "Wants a person"
    db.session.commit()
    assert _takeover(client, workspace, conversation_id).json["handoff_reason"] == "Wants a person"
    owner_said = client.post(
        f"/api/v1/messages/conversations/{conversation_id}",
        json={"content": "Hi, Ana from the studio here."},
        headers=auth_headers(workspace.owner),
    )
    assert owner_said.status_code in (200, 201), owner_said.json

    released = _release(client, workspace, conversation_id)
    assert released.status_code == 200
    assert released.json["agent_mode"] == "auto"
    assert released.json["handoff_requested_at"] is None and released.json["handoff_reason"] is None
    posted = post_message(client, conversation_id, token, "Thanks! One more question")
    assert posted.status_code == 201 and posted.json["run"]["status"] == "queued"
    modes = _events(conversation_id, "agent_mode")
    assert [(e["mode"], e["by"]) for e in modes] == [("paused", "owner"), ("auto", "owner")]
    owner_events = _events(conversation_id, "message")
    assert [e["content"] for e in owner_events] == ["Hi, Ana from the studio here."]
    # Releasing an automatic conversation changes nothing and announces nothing.
    assert _release(client, workspace, conversation_id).json["agent_mode"] == "auto"
    assert len(_events(conversation_id, "agent_mode")) == 2


def test_only_the_owner_or_a_superuser_takes_over(client):
    workspace = make_workspace()
    conversation_id, _ = visitor(client, workspace)
    stranger = make_user()
    for path in ("takeover", "release"):
        url = f"{BASE}/{conversation_id}/{path}"
        assert client.post(url).status_code == 401
        foreign = client.post(url, headers=auth_headers(stranger))
        assert foreign.status_code in (403, 404) and "detail" in foreign.json
    assert (
        client.post(f"{BASE}/not-a-uuid/takeover", headers=auth_headers(workspace.owner)).status_code == 404
    )
    admin = make_user(is_superuser=True)
    done = client.post(f"{BASE}/{conversation_id}/takeover", headers=auth_headers(admin))
    assert done.status_code == 200 and done.json["agent_mode"] == "paused"
    assert db.session.get(Conversation, conversation_id).agent_mode == "paused"


def test_two_tabs_taking_over_at_once_pause_once(app, client):
    workspace = make_workspace()
    conversation_id, token = visitor(client, workspace)
    run_id = post_message(client, conversation_id, token, "hello").json["run"]["id"]
    headers = auth_headers(workspace.owner)
    url = f"{BASE}/{conversation_id}/takeover"

    results = run_concurrently(app, [lambda c: c.post(url, headers=headers)] * 2)

    assert [r.status_code for r in results] == [200, 200]
    assert all(r.json["agent_mode"] == "paused" for r in results)
    assert len(_events(conversation_id, "agent_mode")) == 1
    [run] = _runs(conversation_id)
    assert str(run.id) == run_id and run.status == "cancelled"
    assert len(_events(conversation_id, "message_end")) == 1  # one message_end for the one run


def test_release_racing_a_visitor_post_orders_them_by_the_conversation_lock(app, client):
    """A post the release preceded starts a run; a post that came first (the conversation
    still paused) starts none. The lock orders them: the saved message's timestamp and the
    release's updated_at (both taken under the lock) say which came first."""
    workspace = make_workspace()
    headers = auth_headers(workspace.owner)
    for attempt in range(8):
        conversation_id, token = visitor(client, workspace)
        assert _takeover(client, workspace, conversation_id).status_code == 200
        calls = [
            lambda c, cid=conversation_id: c.post(f"{BASE}/{cid}/release", headers=headers),
            lambda c, cid=conversation_id, t=token, n=attempt: post_message(c, cid, t, f"race {n}"),
        ]
        released, posted = run_concurrently(app, calls)
        assert released.status_code == 200 and posted.status_code == 201
        released_at = released.json["updated_at"]
        posted_at = posted.json["message"]["timestamp"]
        if posted.json["run"] is None:
            assert _instant(posted_at) < _instant(released_at)
            assert _runs(conversation_id) == []
        else:
            assert _instant(posted_at) > _instant(released_at)
            [run] = _runs(conversation_id)
            assert str(run.id) == posted.json["run"]["id"] and run.status == "queued"
        # Whatever the order, the next message is answered.
        assert post_message(client, conversation_id, token, "and now?").json["run"] is not None


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_handoff_filter_lists_only_conversations_waiting_for_a_person(client):
    workspace = make_workspace()
    waiting, _ = visitor(client, workspace)
    visitor(client, workspace)
    conversation = db.session.get(Conversation, waiting)
    conversation.handoff_requested_at, conversation.handoff_reason = utcnow(), "refund"
    db.session.commit()
    headers = auth_headers(workspace.owner)

    listed = client.get(f"{BASE}/workspaces/{workspace.id}?handoff=requested", headers=headers)
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json["data"]] == [waiting] and listed.json["count"] == 1
    assert listed.json["data"][0]["handoff_reason"] == "refund"
    assert client.get(f"{BASE}/workspaces/{workspace.id}", headers=headers).json["count"] == 2
    bad = client.get(f"{BASE}/workspaces/{workspace.id}?handoff=maybe", headers=headers)
    assert bad.status_code == 422 and "handoff" in bad.json["errors"]
    _release(client, workspace, waiting)
    after = client.get(f"{BASE}/workspaces/{workspace.id}?handoff=requested", headers=headers)
    assert after.json["count"] == 0


def test_workspace_handoff_mode_and_push_opt_in_are_settings(client):
    workspace = make_workspace()
    headers = auth_headers(workspace.owner)
    url = f"/api/v1/workspaces/{workspace.id}"
    shown = client.get(url, headers=headers).json
    assert shown["handoff_mode"] == "notify" and shown["push_on_new_conversation"] is False
    changed = client.patch(
        url, json={"handoff_mode": "pause", "push_on_new_conversation": True}, headers=headers
    )
    assert changed.status_code == 200, changed.json
    assert changed.json["handoff_mode"] == "pause" and changed.json["push_on_new_conversation"] is True
    bad = client.patch(url, json={"handoff_mode": "silent"}, headers=headers)
    assert bad.status_code == 422 and "handoff_mode" in bad.json["errors"]
