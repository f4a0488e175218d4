"""Authorization matrix of the owner API: every (method, rule) under /api/v1, outside the
auth/users/utils/public/docs families, must have a row here, or the test fails.

Each row builds fresh data for an owner and names the request; every role then
runs it against its own fresh copy: the owner and a superuser succeed, another
owner gets 403 "Not your workspace", an anonymous caller 401.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from PIL import Image

from tests.factories import (
    auth_headers,
    make_connector,
    make_conversation,
    make_message,
    make_service,
    make_user,
    make_webhook,
    make_webhook_delivery,
    make_workspace,
)

API = "/api/v1"
EXCLUDED_PREFIXES = (
    f"{API}/public/",
    f"{API}/login/",
    f"{API}/password-recovery/",
    f"{API}/reset-password/",
    f"{API}/users/",
    f"{API}/utils/",
    f"{API}/openapi.json",
    f"{API}/docs",
    f"{API}/static/",
)
NOT_YOURS = (403, "Not your workspace")
NO_PRIVILEGES = (403, "The user doesn't have enough privileges")
ANONYMOUS = (401, "Not authenticated")
ROLES = ("owner", "other", "anonymous", "superuser")


@dataclass
class Row:
    # Builds what the request needs for `owner`; returns (url, json body or None).
    setup: Callable
    ok: int = 200
    # Overrides of the default expectations, per role: (status, detail or None).
    expect: dict = field(default_factory=dict)
    # The body is multipart/form-data fields (files as (stream, filename)), not JSON.
    multipart: bool = False

    def expected(self, role: str) -> tuple[int, str | None]:
        default = {"owner": (self.ok, None), "superuser": (self.ok, None), "other": NOT_YOURS}
        return self.expect.get(role) or default.get(role) or ANONYMOUS


def ws(path=""):
    return lambda owner: (f"{API}/workspaces/{make_workspace(owner).id}{path}", None)


def in_workspace(prefix, body=None):
    return lambda owner: (f"{API}/{prefix}/workspaces/{make_workspace(owner).id}", body)


def service(path="", body=None):
    return lambda owner: (f"{API}/workspace-services/{make_service(make_workspace(owner)).id}{path}", body)


def connector(path="", body=None):
    return lambda owner: (f"{API}/connectors/{make_connector(make_workspace(owner)).id}{path}", body)


def conversation(prefix="conversations", body=None):
    def setup(owner):
        conv = make_conversation(make_workspace(owner))
        url = f"{API}/conversations/{conv.id}" if prefix == "conversations" else f"{API}/{prefix}/{conv.id}"
        return url, body

    return setup


def conversation_action(action):
    return lambda owner: (f"{API}/conversations/{make_conversation(make_workspace(owner)).id}/{action}", None)


def tiny_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, format="PNG")
    return out.getvalue()


def profile_image(owner):
    url = f"{API}/workspaces/{make_workspace(owner).id}/profile-image"
    return url, {"image": (io.BytesIO(tiny_png()), "profile.png")}


def conversation_messages(body=None):
    return lambda owner: (f"{API}/conversations/{make_conversation(make_workspace(owner)).id}/messages", body)


def webhook(path="", body=None):
    return lambda owner: (f"{API}/webhooks/{make_webhook(make_workspace(owner)).id}{path}", body)


def redeliver(owner):
    delivery = make_webhook_delivery(make_webhook(make_workspace(owner)), status="failed")
    return f"{API}/webhooks/deliveries/{delivery.id}/redeliver", None


HOOK = {"url": "https://hooks.example.com/in", "events": ["message.created"]}


def message(owner):
    return f"{API}/messages/{make_message(make_conversation(make_workspace(owner))).id}", None


CALENDLY = {"type": "calendly", "config": {"link": "https://calendly.com/jane/intro"}, "is_active": True}

ROWS: dict[tuple[str, str], Row] = {
    ("GET", f"{API}/workspaces/"): Row(
        lambda owner: (make_workspace(owner) and f"{API}/workspaces/", None),
        expect={"owner": NO_PRIVILEGES, "other": NO_PRIVILEGES},
    ),
    # Creating or reading one's own workspace involves nobody else's: every user succeeds.
    ("POST", f"{API}/workspaces/"): Row(
        lambda owner: (f"{API}/workspaces/", {"name": "Mine"}), ok=201, expect={"other": (201, None)}
    ),
    ("GET", f"{API}/workspaces/me"): Row(
        lambda owner: (f"{API}/workspaces/me", None), expect={"other": (200, None)}
    ),
    ("GET", f"{API}/workspaces/<workspace_id>"): Row(ws()),
    ("PATCH", f"{API}/workspaces/<workspace_id>"): Row(
        lambda owner: (f"{API}/workspaces/{make_workspace(owner).id}", {"name": "Renamed"})
    ),
    ("DELETE", f"{API}/workspaces/<workspace_id>"): Row(ws()),
    ("GET", f"{API}/workspaces/<workspace_id>/analytics"): Row(ws("/analytics")),
    ("POST", f"{API}/workspaces/<workspace_id>/profile-image"): Row(profile_image, multipart=True),
    ("POST", f"{API}/workspaces/<workspace_id>/events/ticket"): Row(ws("/events/ticket"), ok=201),
    # The inbox's event stream with the bearer token (a ticket instead: tests/api/test_inbox.py).
    ("GET", f"{API}/workspaces/<workspace_id>/events"): Row(ws("/events")),
    ("GET", f"{API}/workspace-services/workspaces/<workspace_id>"): Row(in_workspace("workspace-services")),
    ("POST", f"{API}/workspace-services/workspaces/<workspace_id>"): Row(
        in_workspace("workspace-services", {"name": "Haircut", "starting_price": "10.00"}), ok=201
    ),
    ("GET", f"{API}/workspace-services/<service_id>"): Row(service()),
    ("PATCH", f"{API}/workspace-services/<service_id>"): Row(service(body={"sort_order": 2})),
    ("DELETE", f"{API}/workspace-services/<service_id>"): Row(service()),
    ("GET", f"{API}/connectors/workspaces/<workspace_id>"): Row(in_workspace("connectors")),
    ("POST", f"{API}/connectors/workspaces/<workspace_id>"): Row(
        in_workspace("connectors", CALENDLY), ok=201
    ),
    ("GET", f"{API}/connectors/<connector_id>"): Row(connector()),
    ("PATCH", f"{API}/connectors/<connector_id>"): Row(connector(body={"is_active": True})),
    ("DELETE", f"{API}/connectors/<connector_id>"): Row(connector()),
    ("POST", f"{API}/connectors/<connector_id>/activate"): Row(connector("/activate")),
    ("POST", f"{API}/connectors/<connector_id>/deactivate"): Row(connector("/deactivate")),
    ("GET", f"{API}/conversations/workspaces/<workspace_id>"): Row(in_workspace("conversations")),
    ("POST", f"{API}/conversations/workspaces/<workspace_id>"): Row(
        in_workspace("conversations", {"visitor_name": "Ana"}), ok=201
    ),
    ("GET", f"{API}/conversations/<conversation_id>"): Row(conversation()),
    ("PATCH", f"{API}/conversations/<conversation_id>"): Row(conversation(body={"status": "closed"})),
    ("DELETE", f"{API}/conversations/<conversation_id>"): Row(conversation()),
    ("POST", f"{API}/conversations/<conversation_id>/takeover"): Row(conversation_action("takeover")),
    ("POST", f"{API}/conversations/<conversation_id>/release"): Row(conversation_action("release")),
    ("GET", f"{API}/conversations/<conversation_id>/messages"): Row(conversation_messages()),
    ("POST", f"{API}/conversations/<conversation_id>/messages"): Row(
        conversation_messages({"role": "user", "content": "Is Friday free?"}), ok=201
    ),
    ("GET", f"{API}/messages/conversations/<conversation_id>"): Row(conversation("messages/conversations")),
    ("POST", f"{API}/messages/conversations/<conversation_id>"): Row(
        conversation("messages/conversations", {"content": "On my way"}), ok=201
    ),
    ("GET", f"{API}/messages/<message_id>"): Row(message),
    ("DELETE", f"{API}/messages/<message_id>"): Row(message),
    ("GET", f"{API}/workspaces/<workspace_id>/webhooks"): Row(ws("/webhooks")),
    ("POST", f"{API}/workspaces/<workspace_id>/webhooks"): Row(
        lambda owner: (f"{API}/workspaces/{make_workspace(owner).id}/webhooks", HOOK), ok=201
    ),
    ("GET", f"{API}/webhooks/<webhook_id>"): Row(webhook()),
    ("PATCH", f"{API}/webhooks/<webhook_id>"): Row(webhook(body={"is_active": False})),
    ("DELETE", f"{API}/webhooks/<webhook_id>"): Row(webhook()),
    ("POST", f"{API}/webhooks/<webhook_id>/rotate-secret"): Row(webhook("/rotate-secret")),
    ("GET", f"{API}/webhooks/<webhook_id>/deliveries"): Row(webhook("/deliveries")),
    ("POST", f"{API}/webhooks/deliveries/<delivery_id>/redeliver"): Row(redeliver, ok=202),
}


def owner_routes(app) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(f"{API}/") and not rule.rule.startswith(EXCLUDED_PREFIXES)
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def test_every_owner_route_has_a_row(app):
    routes = owner_routes(app)
    missing = sorted(routes - set(ROWS))
    assert not missing, f"routes without a row in the authorization matrix: {missing}"
    stale = sorted(set(ROWS) - routes)
    assert not stale, f"rows for routes that no longer exist: {stale}"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("key", sorted(ROWS), ids=lambda key: f"{key[0]} {key[1][len(API) :]}")
def test_authorization(client, key, role):
    method, _rule = key
    row = ROWS[key]
    owner = make_user()
    url, body = row.setup(owner)
    headers = {
        "owner": lambda: auth_headers(owner),
        "other": lambda: auth_headers(make_user()),
        "anonymous": lambda: {},
        "superuser": lambda: auth_headers(make_user(is_superuser=True)),
    }[role]()
    if row.multipart:
        response = client.open(
            url, method=method, data=body, headers=headers, content_type="multipart/form-data"
        )
    else:
        response = client.open(url, method=method, json=body, headers=headers)
    status, detail = row.expected(role)
    assert response.status_code == status, response.json
    if detail is not None:
        assert response.json == {"detail": detail}
