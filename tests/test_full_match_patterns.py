"""Patterns that validate input match the whole value: with re.match and `$`, a value
ending in a newline ("demo\n") would pass."""

import pytest
from flask import g

from backend.logs import _start_request
from backend.rules.connectors import config_problems
from backend.rules.handles import handle_problem
from tests.factories import auth_headers, make_user, make_workspace


@pytest.mark.parametrize("handle", ["tenant-a\n", "demo\n", "demo\r\n"])
def test_a_handle_with_a_trailing_newline_is_refused(client, handle):
    assert handle_problem(handle) is not None
    owner = make_user()
    response = client.post("/api/v1/workspaces/", json={"handle": handle}, headers=auth_headers(owner))
    assert response.status_code == 422 and "handle" in response.get_json()["errors"]
    workspace = make_workspace(handle="tenant-a")
    response = client.patch(
        f"/api/v1/workspaces/{workspace.id}", json={"handle": handle}, headers=auth_headers(workspace.owner)
    )
    assert response.status_code == 422 and "handle" in response.get_json()["errors"]


def test_a_handle_with_a_trailing_newline_finds_no_public_page(client):
    make_workspace(handle="tenant-a")
    assert client.get("/api/v1/public/workspaces/tenant-a%0A").status_code == 404
    assert client.get("/chat/tenant-a%0A").status_code == 404


def test_calendly_path_segments_are_matched_whole():
    assert config_problems("calendly", {"link": "https://calendly.com/jane"}) == []
    assert config_problems("calendly", {"link": "https://calendly.com/jane%0A"}) != []
    assert config_problems("calendly", {"link": "https://calendly.com/jane\n"}) != []


@pytest.mark.parametrize("value,kept", [("req-1", True), ("req-1\n", False), ("a" * 129, False)])
def test_request_ids_are_matched_whole(app, value, kept):
    # Set in the WSGI environ directly: the test client refuses newlines in headers.
    with app.test_request_context(environ_base={"HTTP_X_REQUEST_ID": value}):
        _start_request()
        assert (g.request_id == value) is kept
