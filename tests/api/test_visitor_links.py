"""Links shown to visitors (connector booking links, an owner's website and social
links, a workspace picture) lead to public hosts and read as what they are."""

import pytest

from tests.factories import auth_headers, make_connector, make_user, make_workspace

BAD_LINKS = [
    ("https://169.254.169.254/latest/meta-data", "private, loopback, link-local or reserved"),
    ("https://127.0.0.1/book", "private, loopback, link-local or reserved"),
    ("https://127.1/book", "private, loopback, link-local or reserved"),
    ("https://[::1]/book", "private, loopback, link-local or reserved"),
    ("https://[::ffff:10.0.0.1]/book", "private, loopback, link-local or reserved"),
    ("https://10.1.2.3/book", "private, loopback, link-local or reserved"),
    ("https://192.168.0.10/book", "private, loopback, link-local or reserved"),
    ("https://localhost/book", "this machine or a local network name"),
    ("https://LOCALHOST./book", "this machine or a local network name"),
    ("https://admin.localhost/book", "this machine or a local network name"),
    ("https://book.example.com/\u202egnp.exe", "bidirectional control characters"),
    ("https://book.example.com/\u2066x\u2069", "bidirectional control characters"),
    ("https://book.example.com/a\u200fb", "bidirectional control characters"),
    ("https://book.example.com/a\u061cb", "bidirectional control characters"),
    ("https://user:secret@book.example.com/x", "credentials"),
    ("https://book.example.com@evil.example/x", "credentials"),
]
SQUARE = "/api/v1/connectors"


def owner_posts_square(client, link: str):
    """A new workspace's owner adds a Square connector with `link`: (response, workspace, headers)."""
    workspace = make_workspace()
    headers = auth_headers(workspace.owner)
    response = client.post(
        f"{SQUARE}/workspaces/{workspace.id}",
        json={"type": "square", "config": {"link": link}},
        headers=headers,
    )
    return response, workspace, headers


@pytest.mark.parametrize("link,reason", BAD_LINKS)
def test_connector_links_must_be_public_and_plain(client, link, reason):
    response, workspace, headers = owner_posts_square(client, link)
    assert response.status_code == 422, response.get_json()
    assert reason in response.get_json()["errors"]["config"][0]
    connector = make_connector(workspace, type="square", config={"link": "https://book.squareup.com/a/b"})
    response = client.patch(f"{SQUARE}/{connector.id}", json={"config": {"link": link}}, headers=headers)
    assert response.status_code == 422 and reason in response.get_json()["errors"]["config"][0]


def test_calendly_links_cannot_hide_credentials_either(client):
    workspace = make_workspace()
    response = client.post(
        f"{SQUARE}/workspaces/{workspace.id}",
        json={"type": "calendly", "config": {"link": "https://calendly.com@evil.example/jane"}},
        headers=auth_headers(workspace.owner),
    )
    assert response.status_code == 422 and "credentials" in response.get_json()["errors"]["config"][0]


@pytest.mark.parametrize("link,reason", BAD_LINKS)
def test_profile_links_must_be_public_and_plain(client, link, reason):
    headers = auth_headers(make_user())
    for body, field in (({"website": link}, "website"), ({"social_links": {"site": link}}, "social_links")):
        response = client.patch("/api/v1/users/me", json=body, headers=headers)
        assert response.status_code == 422, (body, response.get_json())
        assert reason in " ".join(response.get_json()["errors"][field])


@pytest.mark.parametrize("link,reason", BAD_LINKS)
def test_workspace_pictures_must_be_public_and_plain(client, link, reason):
    workspace = make_workspace()
    response = client.patch(
        f"/api/v1/workspaces/{workspace.id}",
        json={"profile_image_url": link},
        headers=auth_headers(workspace.owner),
    )
    assert response.status_code == 422, response.get_json()
    assert reason in " ".join(response.get_json()["errors"]["profile_image_url"])


@pytest.mark.parametrize(
    "link",
    [
        "https://book.squareup.com/appointments/abc",
        "https://8.8.8.8/book",
        "https://www.agendapro.com/b/x?y=1",
    ],
)
def test_public_links_are_accepted(client, link):
    response, workspace, headers = owner_posts_square(client, link)
    assert response.status_code == 201, response.get_json()
    response = client.patch(
        "/api/v1/users/me", json={"website": link, "social_links": {"x": link}}, headers=headers
    )
    assert response.status_code == 200, response.get_json()
    response = client.patch(
        f"/api/v1/workspaces/{workspace.id}", json={"profile_image_url": link}, headers=headers
    )
    assert response.status_code == 200, response.get_json()
