"""The owner's live inbox end to end: gunicorn(gevent) + the Celery worker as real processes.

The owner logs in, trades the access token for a ticket and opens the inbox as a browser's
EventSource would (`?ticket=`); a visitor then chats. The run's events come from the worker
(through its stream writer's batch), the visitor's from the web process."""

import requests

from tests.e2e.chat import Visitor
from tests.e2e.harness import SSEClient
from tests.factories import DEFAULT_PASSWORD, make_user, make_workspace
from tests.fake_groq import Reply


def owner_token(stack, email: str) -> str:
    login = requests.post(
        stack.api("/login/access-token"), data={"username": email, "password": DEFAULT_PASSWORD}, timeout=10
    )
    assert login.status_code == 200, login.text
    return login.json()["access_token"]


def test_owner_inbox_sees_a_visitor_chat(stack, groq):
    owner = make_user()
    workspace = make_workspace(owner)
    workspace_id, email = str(workspace.id), owner.email
    groq.default = Reply.text("We are open from nine to five.", delay=0.002)
    bearer = {"Authorization": f"Bearer {owner_token(stack, email)}"}

    issued = requests.post(stack.api(f"/workspaces/{workspace_id}/events/ticket"), headers=bearer, timeout=10)
    assert issued.status_code == 201, issued.text
    ticket = issued.json()["ticket"]
    inbox = SSEClient(stack.api(f"/workspaces/{workspace_id}/events"), params={"ticket": ticket}, timeout=15)
    assert inbox.response.status_code == 200
    assert inbox.response.headers["Content-Type"].startswith("text/event-stream")
    # A used ticket opens nothing.
    again = requests.get(
        stack.api(f"/workspaces/{workspace_id}/events"), params={"ticket": ticket}, timeout=10
    )
    assert again.status_code == 401 and again.json() == {"detail": "Invalid or expired ticket"}

    visitor = Visitor(stack, workspace.handle)
    posted = visitor.send("When are you open?")
    run_id = posted["run"]["id"]
    events = inbox.events_until(lambda e: e.event == "run.finished", timeout=30)
    inbox.close()

    assert [e.event for e in events] == [
        "conversation.created",
        "message.created",
        "run.started",
        "message.created",
        "run.finished",
    ]
    assert all(e.data["conversation_id"] == visitor.conversation_id for e in events)
    assert all(e.id for e in events)
    created, question, started, reply, finished = (e.data for e in events)
    assert created["channel"] == "web_public" and created["visitor_name"] == "Ana"
    assert question["role"] == "user" and question["content"] == "When are you open?"
    assert question["message_id"] == posted["message"]["id"]
    assert started["run_id"] == run_id
    assert reply["role"] == "assistant" and reply["content"] == "We are open from nine to five."
    assert reply["run_id"] == run_id
    assert finished == {**finished, "run_id": run_id, "status": "completed", "degraded": False}
    assert finished["reply_message_id"] == reply["message_id"]

    # Resuming with the last id seen (a mobile client: bearer header, Last-Event-ID header)
    # gets what happened since, and nothing twice.
    last = events[-1].id
    second = visitor.send("And on Saturday?")
    resumed = SSEClient(
        stack.api(f"/workspaces/{workspace_id}/events"), headers={**bearer, "Last-Event-ID": last}, timeout=15
    )
    more = resumed.events_until(
        lambda e: e.event == "run.finished" and e.data["run_id"] == second["run"]["id"], timeout=30
    )
    resumed.close()
    assert [e.event for e in more] == ["message.created", "run.started", "message.created", "run.finished"]
    assert more[0].data["content"] == "And on Saturday?"
