"""The owner list's `q` search gives the same pages and exact counts whichever plan
PostgreSQL runs (services.conversation_search): the probe plan for common words,
the trigram-index plan for rare ones."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from backend.extensions import blocking_redis, db
from backend.services import conversation_search, search_counts
from tests.factories import auth_headers, make_conversation, make_message, make_workspace

BASE = "/api/v1/conversations/workspaces"


@pytest.fixture(params=["probe", "index"])
def plan(request, monkeypatch):
    """Forces one plan: a share of 0 makes every word common, above 1 none."""
    monkeypatch.setattr(conversation_search, "PROBE_SHARE", 0.0 if request.param == "probe" else 2.0)
    return request.param


def _page(client, workspace, query):
    response = client.get(f"{BASE}/{workspace.id}{query}", headers=auth_headers(workspace.owner))
    assert response.status_code == 200, response.json
    return [item["id"] for item in response.json["data"]], response.json["count"]


def _busy_workspace():
    """12 conversations, newest activity first in `ordered`: every third has the word
    only in an old message among others; the last two (no messages, and the oldest
    activity) match by visitor name or email only; another workspace matches too."""
    workspace = make_workspace()
    now = datetime.now(UTC)
    ordered = []
    for i in range(10):
        conversation = make_conversation(workspace)
        at = now - timedelta(hours=i + 1)
        if i % 3 == 0:
            make_message(
                conversation, "user", "Do you do a Haircut-Deluxe?", timestamp=at - timedelta(minutes=9)
            )
        make_message(conversation, "assistant", f"reply {i}", timestamp=at - timedelta(minutes=5))
        make_message(conversation, "user", "thanks", timestamp=at)
        conversation.last_message_at = at
        ordered.append(conversation)
    ordered.append(
        make_conversation(workspace, visitor_name="HAIRCUT-DELUXE fan", created_at=now - timedelta(days=2))
    )
    ordered.append(
        make_conversation(workspace, visitor_email="haircut-deluxe@x.io", created_at=now - timedelta(days=3))
    )
    make_message(make_conversation(make_workspace()), "user", "haircut-deluxe please")
    db.session.commit()  # the last_message_at set above (dated messages leave it as is)
    return workspace, ordered


def test_pages_and_count_are_the_same_in_both_plans(client, plan):
    workspace, ordered = _busy_workspace()
    expected = [str(c.id) for i, c in enumerate(ordered) if i % 3 == 0 or i >= 10]
    assert len(expected) == 6
    assert _page(client, workspace, "?q=haircut-DELUXE") == (expected, 6)
    # Page by page, including a match found only through a message beyond the first page.
    pages = [_page(client, workspace, f"?q=deluxe&limit=2&skip={skip}") for skip in (0, 2, 4)]
    assert [ids for ids, _ in pages] == [expected[0:2], expected[2:4], expected[4:6]]
    assert {count for _, count in pages} == {6}
    assert _page(client, workspace, "?q=deluxe&skip=6") == ([], 6)
    assert _page(client, workspace, "?q=deluxe&limit=0") == ([], 6)
    # Other filters combine with the search in both plans.
    assert _page(client, workspace, "?q=deluxe&status=closed") == ([], 0)
    assert _page(client, workspace, "?q=nowhere") == ([], 0)


def test_like_metacharacters_and_case_are_literal_in_both_plans(client, plan):
    workspace = make_workspace()
    percent = make_conversation(workspace)
    make_message(percent, "user", "Is it 100% ÉCOLE-approved?")
    under = make_conversation(workspace)
    make_message(under, "user", "code promo_2024 and C:\\path\\file")
    plain = make_conversation(workspace)
    make_message(plain, "user", "promo 2024, 100 percent, C:/path")
    greek = make_conversation(workspace, visitor_name="ΣΩΚΡΆΤΗΣ Straße")

    def ids(q):
        found, count = _page(client, workspace, f"?q={q}")
        assert count == len(found)
        return set(found)

    assert ids("100%25") == {str(percent.id)}  # %: a literal percent sign
    assert ids("promo_2") == {str(under.id)}  # _: a literal underscore
    assert ids("c:%5Cpath%5C") == {str(under.id)}  # backslashes, literally
    assert ids("%5C") == {str(under.id)}
    assert ids("%25%25") == set()
    assert ids("école") == {str(percent.id)}  # non-ASCII letters fold too
    assert ids("σωκ") == {str(greek.id)}
    assert ids("STRASSE") == set()  # folding, not transliteration


def test_the_measured_share_picks_the_plan(client):
    workspace = make_workspace()
    for i in range(8):
        conversation = make_conversation(workspace)
        make_message(conversation, "user", "what is the price" if i % 2 else "hello")
        make_message(conversation, "assistant", "the price is 10" if i == 3 else "sure")
    assert conversation_search.is_common("PRICE", workspace.id)  # 5 of 16 messages
    assert not conversation_search.is_common("the price is", workspace.id)  # 1 of 16
    assert not conversation_search.is_common("price", make_workspace().id)  # no messages
    assert _page(client, workspace, "?q=price")[1] == 4
    assert _page(client, workspace, "?q=the price is")[1] == 1


# --- the probe plan's kept count (services.search_counts) --------------------------------------


@pytest.fixture
def probe(monkeypatch):
    monkeypatch.setattr(conversation_search, "PROBE_SHARE", 0.0)


def _count(client, workspace, query="?q=deluxe"):
    return _page(client, workspace, query)[1]


def test_a_kept_count_is_not_counted_again(client, probe):
    workspace, _ordered = _busy_workspace()
    assert _count(client, workspace) == 6
    counted = []

    def record(_conn, _cursor, statement, *_args):
        # The search's count (the plan's sample also counts, over messages, not conversations).
        if re.match(r"SELECT count\(\*\) AS \w+\s+FROM conversations\s", statement) and "ILIKE" in statement:
            counted.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert _count(client, workspace) == 6
        assert _page(client, workspace, "?q=deluxe&limit=2&skip=2")[1] == 6
        assert counted == []
        assert _count(client, workspace, "?q=deluxe&status=closed") == 0  # other filters: counted
        assert len(counted) == 1
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def test_a_kept_count_follows_every_change_that_moves_it(client, probe):
    workspace, ordered = _busy_workspace()
    headers = auth_headers(workspace.owner)
    assert _count(client, workspace) == 6
    assert _count(client, workspace, "?q=deluxe&status=active") == 6

    quiet = ordered[1]  # no message with the word
    posted = client.post(
        f"/api/v1/messages/conversations/{quiet.id}", json={"content": "A DELUXE one?"}, headers=headers
    )
    assert posted.status_code == 201, posted.json
    assert _count(client, workspace) == 7
    logged = client.post(
        f"/api/v1/conversations/{ordered[2].id}/messages",
        json={"role": "assistant", "content": "deluxe is booked"},
        headers=headers,
    )
    assert logged.status_code == 201, logged.json
    assert _count(client, workspace) == 8

    assert client.delete(f"/api/v1/messages/{posted.json['id']}", headers=headers).status_code == 200
    assert _count(client, workspace) == 7

    renamed = client.patch(
        f"/api/v1/conversations/{ordered[4].id}", json={"visitor_name": "Deluxe Dan"}, headers=headers
    )
    assert renamed.status_code == 200, renamed.json
    assert _count(client, workspace) == 8

    closed = client.patch(
        f"/api/v1/conversations/{ordered[0].id}", json={"status": "closed"}, headers=headers
    )
    assert closed.status_code == 200, closed.json
    assert _count(client, workspace, "?q=deluxe&status=active") == 7

    assert client.delete(f"/api/v1/conversations/{ordered[3].id}", headers=headers).status_code == 200
    assert _count(client, workspace) == 7
    created = client.post(
        f"{BASE}/{workspace.id}", json={"channel": "web", "visitor_email": "deluxe@x.io"}, headers=headers
    )
    assert created.status_code == 201, created.json
    assert _count(client, workspace) == 8


def test_without_redis_the_count_is_computed(client, probe, monkeypatch):
    workspace, _ordered = _busy_workspace()
    dead = blocking_redis("redis://127.0.0.1:1/0", 2, socket_connect_timeout=0.2)
    monkeypatch.setattr(search_counts, "redis_client", lambda: dead)
    assert _page(client, workspace, "?q=deluxe&limit=2")[1] == 6
    assert _count(client, workspace) == 6
