"""Scheduling connectors: config validation per type and one active connector per workspace."""

import pytest
from sqlalchemy import func, select

from backend.extensions import db
from backend.models import SchedulingConnector
from tests.concurrency import run_concurrently
from tests.factories import auth_headers, make_connector, make_user, make_workspace

BASE = "/api/v1/connectors"


def _active_ids(workspace) -> set[str]:
    db.session.expire_all()
    rows = db.session.scalars(
        select(SchedulingConnector.id).where(
            SchedulingConnector.workspace_id == workspace.id, SchedulingConnector.is_active.is_(True)
        )
    )
    return {str(r) for r in rows}


def test_crud(client):
    workspace = make_workspace()
    headers = auth_headers(workspace.owner)
    body = {"type": "calendly", "config": {"link": "https://calendly.com/jane/intro", "note": "kept"}}
    created = client.post(f"{BASE}/workspaces/{workspace.id}", json={**body, "junk": 1}, headers=headers)
    assert created.status_code == 201, created.json
    connector = created.json
    assert connector["type"] == "calendly" and connector["is_active"] is False
    assert connector["config"] == body["config"]
    assert client.get(f"{BASE}/{connector['id']}", headers=headers).json == connector
    listed = client.get(f"{BASE}/workspaces/{workspace.id}", headers=headers).json
    assert listed["count"] == 1 and listed["data"][0]["id"] == connector["id"]
    patched = client.patch(
        f"{BASE}/{connector['id']}",
        json={"type": "square", "config": {"link": "https://squareup.com/appointments/book/x"}},
        headers=headers,
    )
    assert patched.status_code == 200 and patched.json["type"] == "square"
    deleted = client.delete(f"{BASE}/{connector['id']}", headers=headers)
    assert deleted.json == {"message": "Connector deleted successfully"}
    missing = client.get(f"{BASE}/{connector['id']}", headers=headers)
    assert missing.status_code == 404 and missing.json == {"detail": "Connector not found"}


@pytest.mark.parametrize(
    "connector_type,config",
    [
        ("calendly", {}),
        ("calendly", {"link": ""}),
        ("calendly", {"link": 42}),
        ("calendly", {"link": "http://calendly.com/jane"}),
        ("calendly", {"link": "https://calendly.com"}),
        ("calendly", {"link": "https://calendly.com/"}),
        ("calendly", {"link": "https://calendly.com/a/b/c"}),
        ("calendly", {"link": "https://calendly.com.evil.example/jane"}),
        ("calendly", {"link": "https://example.com/jane"}),
        ("calendly", {"link": "https://user:pw@calendly.com/jane"}),
        ("square", {"link": "ftp://squareup.com/x"}),
        ("square", {"link": "not a url"}),
        ("agendapro", {"link": "javascript:alert(1)"}),
        ("agendapro", {"url": "https://agendapro.com/x"}),
    ],
)
def test_bad_config_is_422_with_field_errors(client, connector_type, config):
    workspace = make_workspace()
    response = client.post(
        f"{BASE}/workspaces/{workspace.id}",
        json={"type": connector_type, "config": config},
        headers=auth_headers(workspace.owner),
    )
    assert response.status_code == 422, response.json
    assert "link" in response.json["errors"]["config"][0]


@pytest.mark.parametrize(
    "body,field",
    [
        ({"type": "zoom", "config": {"link": "https://zoom.us/x"}}, "type"),
        ({"config": {"link": "https://calendly.com/jane"}}, "type"),
        ({"type": "calendly"}, "config"),
        ({"type": "calendly", "config": "https://calendly.com/jane"}, "config"),
        (
            {"type": "calendly", "config": {"link": "https://calendly.com/j"}, "is_active": "yes please"},
            "is_active",
        ),
    ],
)
def test_bad_body_is_422(client, body, field):
    workspace = make_workspace()
    response = client.post(
        f"{BASE}/workspaces/{workspace.id}", json=body, headers=auth_headers(workspace.owner)
    )
    assert response.status_code == 422
    assert field in response.json["errors"]


@pytest.mark.parametrize(
    "connector_type,link",
    [
        ("calendly", "https://calendly.com/jane-doe"),
        ("calendly", "https://calendly.com/jane_doe/30min?month=2026-01"),
        ("square", "https://book.squareup.com/appointments/abc/location/def"),
        ("agendapro", "https://www.agendapro.com/book/my-studio"),
    ],
)
def test_good_links(client, connector_type, link):
    workspace = make_workspace()
    response = client.post(
        f"{BASE}/workspaces/{workspace.id}",
        json={"type": connector_type, "config": {"link": link}},
        headers=auth_headers(workspace.owner),
    )
    assert response.status_code == 201, response.json


def test_patch_revalidates_config_against_new_type(client):
    workspace = make_workspace()
    connector = make_connector(workspace, type="square", config={"link": "https://squareup.com/x"})
    response = client.patch(
        f"{BASE}/{connector.id}", json={"type": "calendly"}, headers=auth_headers(workspace.owner)
    )
    assert response.status_code == 422
    assert "calendly.com" in response.json["errors"]["config"][0]


def test_every_path_keeps_one_active(client):
    workspace = make_workspace()
    headers = auth_headers(workspace.owner)
    other_workspace_active = make_connector(make_workspace(), is_active=True)

    def create(active):
        body = {"type": "calendly", "config": {"link": "https://calendly.com/jane"}, "is_active": active}
        return client.post(f"{BASE}/workspaces/{workspace.id}", json=body, headers=headers).json["id"]

    first = create(True)
    assert _active_ids(workspace) == {first}
    second = create(True)
    assert _active_ids(workspace) == {second}
    third = create(False)
    assert _active_ids(workspace) == {second}
    assert client.patch(f"{BASE}/{third}", json={"is_active": True}, headers=headers).json["is_active"]
    assert _active_ids(workspace) == {third}
    activated = client.post(f"{BASE}/{first}/activate", headers=headers)
    assert activated.status_code == 200 and activated.json["is_active"] is True
    assert _active_ids(workspace) == {first}
    assert client.get(f"{BASE}/{third}", headers=headers).json["is_active"] is False
    deactivated = client.post(f"{BASE}/{first}/deactivate", headers=headers)
    assert deactivated.status_code == 200 and deactivated.json["is_active"] is False
    assert _active_ids(workspace) == set()
    # Other workspaces are never touched.
    assert _active_ids(db.session.get(type(workspace), other_workspace_active.workspace_id)) == {
        str(other_workspace_active.id)
    }


def test_database_refuses_a_second_active_connector(client):
    workspace = make_workspace()
    make_connector(workspace, is_active=True)
    with pytest.raises(Exception) as raised:
        make_connector(workspace, is_active=True)
    assert "uq_scheduling_connectors_one_active" in str(raised.value)
    db.session.rollback()


def test_unique_index_violation_maps_to_409(client, monkeypatch):
    """If the lock were bypassed, the partial unique index still answers, as a 409."""
    from backend.services import connectors as service

    workspace = make_workspace()
    make_connector(workspace, is_active=True)
    idle = make_connector(workspace)
    monkeypatch.setattr(service, "switch_off_others", lambda *args: None)
    response = client.post(f"{BASE}/{idle.id}/activate", headers=auth_headers(workspace.owner))
    assert response.status_code == 409
    assert response.json == {"detail": "Another connector of this workspace is already active"}


def test_concurrent_activations_leave_exactly_one_active(app):
    workspace = make_workspace()
    headers = auth_headers(workspace.owner)
    ids = [str(make_connector(workspace).id) for _ in range(6)]
    for _ in range(3):
        calls = [lambda c, i=i: c.post(f"{BASE}/{i}/activate", headers=headers) for i in ids]
        statuses = [r.status_code for r in run_concurrently(app, calls)]
        assert statuses == [200] * len(ids)
        assert len(_active_ids(workspace)) == 1
        count = db.session.scalar(
            select(func.count())
            .select_from(SchedulingConnector)
            .where(SchedulingConnector.is_active.is_(True))
        )
        assert count == 1


def test_other_owner_is_forbidden(client):
    connector = make_connector(make_workspace())
    other = auth_headers(make_user())
    for response in (
        client.get(f"{BASE}/{connector.id}", headers=other),
        client.post(f"{BASE}/{connector.id}/activate", headers=other),
        client.post(f"{BASE}/{connector.id}/deactivate", headers=other),
        client.delete(f"{BASE}/{connector.id}", headers=other),
    ):
        assert response.status_code == 403
        assert response.json == {"detail": "Not your workspace"}
