"""Workspace services: CRUD, exact decimal prices, ISO 4217 currencies, ordering."""

import pytest

from tests.factories import auth_headers, make_service, make_user, make_workspace

BASE = "/api/v1/workspace-services"


def test_create_get_patch_delete(client):
    workspace = make_workspace()
    headers = auth_headers(workspace.owner)
    body = {
        "name": "Consultation",
        "description": "First meeting",
        "format": "online",
        "duration_minutes": 45,
        "starting_price": "19.99",
        "currency": "EUR",
        "sort_order": 3,
        "extra": "ignored",
    }
    created = client.post(f"{BASE}/workspaces/{workspace.id}", json=body, headers=headers)
    assert created.status_code == 201, created.json
    service = created.json
    assert service["starting_price"] == "19.99"
    assert service["workspace_id"] == str(workspace.id)
    assert (service["name"], service["currency"], service["is_active"], service["sort_order"]) == (
        "Consultation",
        "EUR",
        True,
        3,
    )
    fetched = client.get(f"{BASE}/{service['id']}", headers=headers)
    assert fetched.json == service
    patched = client.patch(
        f"{BASE}/{service['id']}", json={"starting_price": None, "is_active": False}, headers=headers
    )
    assert patched.status_code == 200
    assert patched.json["starting_price"] is None and patched.json["is_active"] is False
    deleted = client.delete(f"{BASE}/{service['id']}", headers=headers)
    assert deleted.json == {"message": "Service deleted successfully"}
    missing = client.get(f"{BASE}/{service['id']}", headers=headers)
    assert missing.status_code == 404 and missing.json == {"detail": "Service not found"}


@pytest.mark.parametrize(
    "sent,stored",
    [
        ("19.99", "19.99"),
        (19.99, "19.99"),
        (0.1, "0.10"),
        ("0", "0.00"),
        (25, "25.00"),
        ("19.990", "19.99"),
        ("9999999999.99", "9999999999.99"),
        ("1234567.89", "1234567.89"),
    ],
)
def test_price_is_exact_and_a_string(client, sent, stored):
    workspace = make_workspace()
    headers = auth_headers(workspace.owner)
    created = client.post(
        f"{BASE}/workspaces/{workspace.id}", json={"name": "X", "starting_price": sent}, headers=headers
    )
    assert created.status_code == 201, created.json
    assert created.json["starting_price"] == stored
    assert client.get(f"{BASE}/{created.json['id']}", headers=headers).json["starting_price"] == stored


@pytest.mark.parametrize(
    "field,value",
    [
        ("starting_price", "-0.01"),
        ("starting_price", "19.999"),
        ("starting_price", "abc"),
        ("starting_price", "NaN"),
        ("starting_price", "Infinity"),
        ("starting_price", "1e400"),
        ("starting_price", "123456789012345678901234567890.123"),
        ("starting_price", "10000000000"),
        ("starting_price", True),
        ("currency", "usd"),
        ("currency", "XYZ"),
        ("currency", "US"),
        ("currency", None),
        ("name", ""),
        ("name", None),
        ("duration_minutes", 0),
        ("duration_minutes", 2**31),
        ("sort_order", "first"),
    ],
)
def test_invalid_fields_are_422(client, field, value):
    workspace = make_workspace()
    body = {"name": "X", field: value}
    response = client.post(
        f"{BASE}/workspaces/{workspace.id}", json=body, headers=auth_headers(workspace.owner)
    )
    assert response.status_code == 422, response.json
    assert field in response.json["errors"]


def test_name_is_required_and_currency_defaults_to_usd(client):
    workspace = make_workspace()
    headers = auth_headers(workspace.owner)
    response = client.post(f"{BASE}/workspaces/{workspace.id}", json={}, headers=headers)
    assert response.status_code == 422 and "name" in response.json["errors"]
    response = client.post(f"{BASE}/workspaces/{workspace.id}", json={"name": "A"}, headers=headers)
    assert response.json["currency"] == "USD"


def test_list_ordered_by_sort_order_then_name_with_paging(client):
    workspace = make_workspace()
    make_service(make_workspace(), name="Other workspace")
    for name, order in [("Zeta", 0), ("Alpha", 1), ("Beta", 0), ("Gamma", -1)]:
        make_service(workspace, name=name, sort_order=order)
    headers = auth_headers(workspace.owner)
    response = client.get(f"{BASE}/workspaces/{workspace.id}", headers=headers)
    assert response.status_code == 200
    assert [s["name"] for s in response.json["data"]] == ["Gamma", "Beta", "Zeta", "Alpha"]
    assert response.json["count"] == 4
    page = client.get(f"{BASE}/workspaces/{workspace.id}?skip=1&limit=2", headers=headers).json
    assert [s["name"] for s in page["data"]] == ["Beta", "Zeta"] and page["count"] == 4
    assert client.get(f"{BASE}/workspaces/{workspace.id}?limit=1001", headers=headers).status_code == 422
    assert client.get(f"{BASE}/workspaces/{workspace.id}?skip=-1", headers=headers).status_code == 422


def test_other_owner_is_forbidden(client):
    workspace = make_workspace()
    service = make_service(workspace)
    other = auth_headers(make_user())
    for response in (
        client.get(f"{BASE}/{service.id}", headers=other),
        client.patch(f"{BASE}/{service.id}", json={"name": "Hijack"}, headers=other),
        client.delete(f"{BASE}/{service.id}", headers=other),
        client.get(f"{BASE}/workspaces/{workspace.id}", headers=other),
        client.post(f"{BASE}/workspaces/{workspace.id}", json={"name": "X"}, headers=other),
    ):
        assert response.status_code == 403
        assert response.json == {"detail": "Not your workspace"}
    missing = client.post(
        f"{BASE}/workspaces/00000000-0000-0000-0000-000000000000", json={"name": "X"}, headers=other
    )
    assert missing.status_code == 404 and missing.json == {"detail": "Workspace not found"}
