"""The webhook routes through the Flask client: validation, the limit, the secret shown
once, rotation, the delivery log and redelivery."""

import pytest
from sqlalchemy import select

from backend.extensions import db
from backend.models import WebhookDelivery, WebhookSubscription
from backend.rules.webhooks import EVENT_TYPES
from backend.services import webhook_delivery
from backend.services.webhook_sender import Result
from tests.factories import auth_headers, make_webhook, make_webhook_delivery, make_workspace
from tests.helpers import assert_error

API = "/api/v1"
HOOK = {"url": "https://hooks.example.com/in", "events": ["message.created", "reply.completed"]}


@pytest.fixture
def owned():
    workspace = make_workspace()
    return workspace, auth_headers(workspace.owner)


def _create(client, workspace, headers, **body):
    return client.post(f"{API}/workspaces/{workspace.id}/webhooks", json={**HOOK, **body}, headers=headers)


def test_create_shows_the_secret_once(client, owned):
    workspace, headers = owned
    created = _create(client, workspace, headers)
    assert created.status_code == 201, created.json
    hook = created.json
    assert hook["secret"].startswith("whsec_") and hook["is_active"] is True
    assert hook["events"] == HOOK["events"] and hook["url"] == HOOK["url"]
    assert hook["workspace_id"] == str(workspace.id) and hook["consecutive_failures"] == 0
    listed = client.get(f"{API}/workspaces/{workspace.id}/webhooks", headers=headers).json
    assert listed["count"] == 1 and "secret" not in listed["data"][0]
    got = client.get(f"{API}/webhooks/{hook['id']}", headers=headers).json
    assert "secret" not in got and got["id"] == hook["id"]
    assert db.session.get(WebhookSubscription, hook["id"]).secret == hook["secret"]


def test_rotate_gives_a_new_secret(client, owned):
    workspace, headers = owned
    hook = _create(client, workspace, headers).json
    rotated = client.post(f"{API}/webhooks/{hook['id']}/rotate-secret", headers=headers)
    assert rotated.status_code == 200
    assert rotated.json["secret"] != hook["secret"] and rotated.json["secret"].startswith("whsec_")
    db.session.expire_all()
    assert db.session.get(WebhookSubscription, hook["id"]).secret == rotated.json["secret"]


def test_patch_and_delete(client, owned):
    workspace, headers = owned
    hook = _create(client, workspace, headers, is_active=False).json
    assert hook["is_active"] is False
    patched = client.patch(
        f"{API}/webhooks/{hook['id']}",
        json={"events": ["booking_link.shared", "booking_link.shared"], "url": "https://other.example.com/x"},
        headers=headers,
    )
    assert patched.status_code == 200
    assert (
        patched.json["events"] == ["booking_link.shared"]
        and patched.json["url"] == "https://other.example.com/x"
    )
    deleted = client.delete(f"{API}/webhooks/{hook['id']}", headers=headers)
    assert deleted.status_code == 200 and deleted.json == {"message": "Webhook deleted successfully"}
    assert_error(client.get(f"{API}/webhooks/{hook['id']}", headers=headers), 404, "Webhook not found")


def test_switching_on_again_resets_the_failure_count(client, owned):
    workspace, headers = owned
    hook = make_webhook(workspace, is_active=False, consecutive_failures=50, disabled_reason="50 failures")
    patched = client.patch(f"{API}/webhooks/{hook.id}", json={"is_active": True}, headers=headers).json
    assert patched["is_active"] is True and patched["consecutive_failures"] == 0
    assert patched["disabled_reason"] is None and patched["disabled_at"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["message.deleted"]}, "events"),
        ({"events": []}, "events"),
        ({"events": "message.created"}, "events"),
        ({"events": [1]}, "events"),
        ({"url": "http://hooks.example.com/in"}, "url"),
        ({"url": "https://user:pw@hooks.example.com/"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": ""}, "url"),
        ({"url": 5}, "url"),
        ({"is_active": "maybe"}, "is_active"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(client, owned, body, field):
    workspace, headers = owned
    response = _create(client, workspace, headers, **body)
    assert_error(response, 422)
    assert field in response.json["errors"]
    hook = make_webhook(workspace)
    assert_error(client.patch(f"{API}/webhooks/{hook.id}", json=body, headers=headers), 422)


def test_required_fields_and_malformed_json(client, owned):
    workspace, headers = owned
    response = client.post(f"{API}/workspaces/{workspace.id}/webhooks", json={}, headers=headers)
    assert_error(response, 422)
    assert {"url", "events"} <= set(response.json["errors"])
    malformed = client.post(
        f"{API}/workspaces/{workspace.id}/webhooks",
        data="{nope",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert_error(malformed, 400, "Malformed JSON body")


def test_http_is_accepted_when_allowed(client, owned, app, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_HTTP", True)
    workspace, headers = owned
    assert _create(client, workspace, headers, url="http://hooks.example.com/in").status_code == 201


def test_at_most_ten_per_workspace(client, owned):
    workspace, headers = owned
    for _ in range(10):
        assert _create(client, workspace, headers).status_code == 201
    refused = _create(client, workspace, headers)
    assert_error(refused, 422, "A workspace can have at most 10 webhooks")
    assert (
        client.get(f"{API}/workspaces/{workspace.id}/webhooks?limit=3", headers=headers).json["count"] == 10
    )


def test_every_event_type_can_be_subscribed(client, owned):
    workspace, headers = owned
    assert _create(client, workspace, headers, events=list(EVENT_TYPES)).json["events"] == list(EVENT_TYPES)


def test_unknown_ids_are_404(client, owned):
    _, headers = owned
    assert_error(client.get(f"{API}/webhooks/not-a-uuid", headers=headers), 404, "Webhook not found")
    missing = "00000000-0000-0000-0000-000000000000"
    assert_error(client.get(f"{API}/webhooks/{missing}/deliveries", headers=headers), 404)
    assert_error(client.post(f"{API}/webhooks/deliveries/{missing}/redeliver", headers=headers), 404)
    assert_error(client.post(f"{API}/webhooks/deliveries/nope/redeliver", headers=headers), 404)


def test_deliveries_list_attempts_and_redeliver(client, owned, monkeypatch):
    workspace, headers = owned
    hook = make_webhook(workspace)
    delivery = make_webhook_delivery(hook)
    results = iter(
        [Result(500, "HTTP 500", 12), Result(None, "timed out after 5 s", 5000), Result(204, None, 3)]
    )
    monkeypatch.setattr(webhook_delivery.webhook_sender, "post", lambda *args: next(results))
    webhook_delivery.attempt(str(delivery.id))
    page = client.get(f"{API}/webhooks/{hook.id}/deliveries", headers=headers).json
    assert page["count"] == 1
    [first] = page["data"]
    assert first["attempt"] == 1 and first["status_code"] == 500 and first["error"] == "HTTP 500"
    assert first["duration_ms"] == 12 and first["next_retry_at"] is not None
    assert first["event_type"] == "message.created" and first["event_id"] == str(delivery.event_id)
    assert first["delivery_id"] == str(delivery.id) and first["delivery_status"] == "pending"

    # Redelivery by an attempt's id brings the retry forward.
    response = client.post(f"{API}/webhooks/deliveries/{first['id']}/redeliver", headers=headers)
    assert response.status_code == 202 and response.json == {"message": "Redelivery queued"}
    webhook_delivery.attempt(str(delivery.id))
    webhook_delivery.attempt(str(delivery.id))  # not due yet: nothing happens
    db.session.expire_all()
    assert db.session.get(WebhookDelivery, delivery.id).attempts == 2
    client.post(f"{API}/webhooks/deliveries/{delivery.id}/redeliver", headers=headers)
    webhook_delivery.attempt(str(delivery.id))
    page = client.get(f"{API}/webhooks/{hook.id}/deliveries?limit=2", headers=headers).json
    assert page["count"] == 3 and [a["attempt"] for a in page["data"]] == [3, 2]
    assert page["data"][0]["status_code"] == 204 and page["data"][0]["delivery_status"] == "delivered"
    assert page["data"][1]["error"] == "timed out after 5 s" and page["data"][1]["status_code"] is None

    # A delivered one can be sent once more.
    assert (
        client.post(f"{API}/webhooks/deliveries/{delivery.id}/redeliver", headers=headers).status_code == 202
    )
    db.session.expire_all()
    assert db.session.execute(select(WebhookDelivery.status)).scalar_one() == "pending"
