"""A visitor's calls to the public chat API, for the API tests."""

from urllib.parse import quote

from sqlalchemy import select

from backend.extensions import db
from backend.models import Workspace
from tests.factories import make_workspace

API = "/api/v1/public"


def start_conversation(client, handle: str, **extra) -> tuple[str, str]:
    response = client.post(f"{API}/conversations", json={"workspace_handle": handle, **extra})
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    return body["conversation_id"], body["visitor_token"]


def visitor(client, workspace=None, **extra) -> tuple[str, str]:
    """A new conversation (on the test's workspace unless one is given): (id, token)."""
    workspace = workspace or current_workspace()
    return start_conversation(client, workspace.handle, **extra)


def current_workspace():
    """The workspace the test already has, else a new one (creating its owner hashes a
    password, which is what makes tests slow)."""
    return db.session.execute(select(Workspace).limit(1)).scalar_one_or_none() or make_workspace()


def post_message(client, conversation_id, token, content="Hello there", **extra):
    return client.post(
        f"{API}/conversations/{conversation_id}/messages",
        json={"content": content, **extra},
        headers={"X-Visitor-Token": token},
    )


def list_messages(client, conversation_id, token, **query):
    query_string = "&".join(f"{k}={quote(str(v))}" for k, v in query.items())
    return client.get(
        f"{API}/conversations/{conversation_id}/messages?{query_string}",
        headers={"X-Visitor-Token": token},
    )
