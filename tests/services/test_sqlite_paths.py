"""The owner API on the embedded SQLite default: the same answers through the
dialect-specific paths (json_each tag filter, LIKE search, Python analytics,
the partial unique index for the active connector)."""

from datetime import UTC, datetime, timedelta

import pytest
from flask_migrate import upgrade

from tests.factories import auth_headers, make_conversation, make_message, make_user, make_workspace
from tests.helpers import build_app


@pytest.fixture
def sqlite_client(app, tmp_path):
    url = f"sqlite:///{tmp_path / 'owner.db'}"
    with build_app(app, SQLALCHEMY_DATABASE_URI=url) as other, other.app_context():
        upgrade()
        yield other.test_client()


def test_owner_api_on_sqlite(sqlite_client):
    client = sqlite_client
    workspace = make_workspace(make_user(email="lite@example.com"), timezone="Asia/Kolkata")
    headers = auth_headers(workspace.owner)
    now = datetime.now(UTC)
    a = make_conversation(
        workspace, tags=["vip", "lead"], visitor_name="Zoë", created_at=now - timedelta(days=3)
    )
    b = make_conversation(workspace, tags=["lead"], status="closed", created_at=now - timedelta(days=2))
    make_conversation(workspace, created_at=now - timedelta(days=1))
    make_message(a, "user", "Need a 50% DISCOUNT", timestamp=now - timedelta(hours=5))
    make_message(
        a, "assistant", "Sure", timestamp=now - timedelta(hours=4), meta={"usage": {"total_tokens": 9}}
    )
    make_message(b, "assistant", "Hi", timestamp=now - timedelta(hours=1), meta={"degraded": True})

    base = f"/api/v1/conversations/workspaces/{workspace.id}"

    def ids(query=""):
        response = client.get(f"{base}{query}", headers=headers)
        assert response.status_code == 200, response.json
        return [item["id"] for item in response.json["data"]]

    assert ids()[:2] == [str(b.id), str(a.id)]  # latest activity first, no messages last
    assert set(ids("?tag=lead")) == {str(a.id), str(b.id)}
    assert ids("?tag=vip") == [str(a.id)]
    assert ids("?tag=vi") == []
    assert ids("?q=discount") == [str(a.id)]
    assert ids("?q=50%25") == [str(a.id)]
    assert ids("?q=zoë") == [str(a.id)]
    assert ids("?status=closed") == [str(b.id)]
    assert ids("?since=" + (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")) == [str(b.id)]

    posted = client.post(
        f"/api/v1/messages/conversations/{a.id}", json={"content": "owner here"}, headers=headers
    )
    assert posted.status_code == 201 and posted.json["role"] == "owner"

    totals = client.get(f"/api/v1/workspaces/{workspace.id}/analytics?days=7", headers=headers).json["totals"]
    assert totals == {
        "conversations": 3,
        "visitor_messages": 1,
        "assistant_replies": 2,
        "degraded_replies": 1,
        "human_time_saved_minutes": 0,
        "tokens_used": 9,
    }

    link = {"type": "calendly", "config": {"link": "https://calendly.com/lite"}, "is_active": True}
    first = client.post(f"/api/v1/connectors/workspaces/{workspace.id}", json=link, headers=headers).json
    second = client.post(f"/api/v1/connectors/workspaces/{workspace.id}", json=link, headers=headers).json
    assert client.get(f"/api/v1/connectors/{first['id']}", headers=headers).json["is_active"] is False
    assert client.post(f"/api/v1/connectors/{first['id']}/activate", headers=headers).status_code == 200
    listed = client.get(f"/api/v1/connectors/workspaces/{workspace.id}", headers=headers).json["data"]
    assert [c["id"] for c in listed if c["is_active"]] == [first["id"]] and second["id"]

    me = client.get("/api/v1/workspaces/me", headers=auth_headers(make_user(email="new.one@example.com")))
    assert me.status_code == 200 and me.json["handle"] == "new-one"
