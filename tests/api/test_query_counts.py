"""The number of SQL statements per list request does not grow with the page size."""

import pytest

from backend.extensions import db, redis_client
from backend.services import search_counts
from tests.api.visitors import post_message, start_conversation
from tests.factories import (
    auth_headers,
    make_connector,
    make_conversation,
    make_message,
    make_service,
    make_workspace,
)
from tests.helpers import count_statements

ROWS = 60


def seed_conversations(workspace):
    for i in range(ROWS):
        make_message(make_conversation(workspace, tags=["vip"], visitor_name=f"Visitor {i}"), "user", "hello")
    return f"/api/v1/conversations/workspaces/{workspace.id}?tag=vip&q=hello"


def seed_messages(workspace):
    conversation = make_conversation(workspace)
    for i in range(ROWS):
        make_message(
            conversation, "user" if i % 2 else "assistant", f"m{i}", meta={"usage": {"total_tokens": 3}}
        )
    return f"/api/v1/messages/conversations/{conversation.id}"


def seed_services(workspace):
    for i in range(ROWS):
        make_service(workspace, name=f"S{i}", starting_price="9.99")
    return f"/api/v1/workspace-services/workspaces/{workspace.id}"


def seed_connectors(workspace):
    for _ in range(ROWS):
        make_connector(workspace)
    return f"/api/v1/connectors/workspaces/{workspace.id}"


@pytest.mark.parametrize("seed", [seed_conversations, seed_messages, seed_services, seed_connectors])
def test_statement_count_is_constant_in_page_size(client, seed):
    workspace = make_workspace()
    url = seed(workspace)
    headers = auth_headers(workspace.owner)
    db.session.remove()  # nothing cached in the identity map between the two requests
    counts = {}
    for limit in (5, 50):
        separator = "&" if "?" in url else "?"
        forget_kept_counts()  # both requests count (services.search_counts keeps a `q` count)
        with count_statements() as statements:
            response = client.get(f"{url}{separator}limit={limit}", headers=headers)
        assert response.status_code == 200
        assert len(response.json["data"]) == limit and response.json["count"] == ROWS
        counts[limit] = len(statements)
        db.session.remove()
    assert counts[5] == counts[50], counts
    # user, workspace (or parent), count, page; for the `q` search also the plan's sample
    # and the version its count is kept under
    assert counts[50] <= (6 if "q=" in url else 4), counts


def forget_kept_counts() -> None:
    for key in redis_client().scan_iter(f"{search_counts.KEY_PREFIX}*"):
        redis_client().delete(key)


def test_a_visitor_post_reads_its_conversation_once_under_the_lock(client):
    """The token check is the row lock (`@visitor(lock=True)`), and a new conversation is
    answered from the row just written, without reading it back."""
    handle = make_workspace().handle
    db.session.remove()
    with count_statements() as statements:
        conversation_id, token = start_conversation(client, handle)
    assert not [s for s in statements if s.lstrip().startswith("SELECT") and "FROM conversations" in s]
    db.session.remove()
    with count_statements() as statements:
        response = post_message(client, conversation_id, token, idempotency_key="k-1")
    assert response.status_code == 201, response.get_data(as_text=True)
    reads = [s for s in statements if "FROM conversations" in s and s.lstrip().startswith("SELECT")]
    assert len(reads) == 1 and "FOR UPDATE" in reads[0], reads


def test_takeover_and_release_answer_with_the_state_they_wrote(client):
    """Each reads the conversation for the owner's access check and under its lock, then
    answers from what it wrote: a read-back after the commit could show a visitor post
    that committed in between (its `updated_at`, not the release's)."""
    workspace = make_workspace()
    headers = auth_headers(workspace.owner)
    conversation_id, _token = start_conversation(client, workspace.handle)
    for action, mode in (("takeover", "paused"), ("release", "auto")):
        db.session.remove()
        with count_statements() as statements:
            response = client.post(f"/api/v1/conversations/{conversation_id}/{action}", headers=headers)
        assert response.status_code == 200 and response.json["agent_mode"] == mode
        reads = [s for s in statements if s.lstrip().startswith("SELECT") and "FROM conversations" in s]
        assert len(reads) == 2 and "FOR UPDATE" in reads[-1], (action, reads)
