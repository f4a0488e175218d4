"""Credentials are checked before the body or query is read, on every route: a caller
without them gets 401/403 whatever it sends. Only accepted visitor messages spend a
conversation's message budget; an idempotent replay answers 200 even once it is spent;
Retry-After tells the real time to the window's reset and appears on 429s only."""

import uuid

import pytest
from flask import Flask

from tests.api.visitors import post_message, start_conversation
from tests.factories import make_conversation, make_workspace
from tests.helpers import assert_error, build_app

API = "/api/v1"
# Families whose routes need no credentials at all.
OPEN_ROUTES = (
    f"{API}/public/workspaces/",
    f"{API}/public/conversations",  # creating one (the POST without an id)
    f"{API}/login/access-token",
    f"{API}/password-recovery/",
    f"{API}/reset-password/",
    f"{API}/users/signup",
    f"{API}/utils/health-check/",
    f"{API}/openapi.json",
    f"{API}/docs",
    f"{API}/static/",
)
BAD_BODY = "{this is not json"
BAD_QUERY = "?limit=-5&skip=abc&days=0&since=yesterday&q=%00"
FORGED = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}


def protected_requests(app: Flask):
    """(method, url) for every API route that needs credentials, ids filled in (a real
    conversation's for visitor routes, so the answer is about the token, not a 404)."""
    conversation_id = str(make_conversation(make_workspace()).id)
    for rule in app.url_map.iter_rules():
        path = rule.rule
        if not path.startswith(API):
            continue
        url = path.replace("<uuid:conversation_id>", conversation_id) if "/public/" in path else path
        for argument in rule.arguments:
            url = url.replace(f"<uuid:{argument}>", str(uuid.uuid4())).replace(
                f"<{argument}>", str(uuid.uuid4())
            )
            url = url.replace(f"<string:{argument}>", "demo-handle")
        is_open = url.startswith(OPEN_ROUTES) and not url.startswith(f"{API}/public/conversations/")
        if is_open:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, url


def test_every_protected_route_answers_401_before_reading_a_bad_body_or_query(app, client):
    checked = 0
    for method, url in protected_requests(app):
        response = client.open(url + BAD_QUERY, method=method, data=BAD_BODY, content_type="application/json")
        assert response.status_code == 401, (method, url, response.get_json())
        assert response.get_json()["detail"], (method, url)
        checked += 1
    assert checked > 30


def test_every_owner_route_answers_403_to_a_forged_token_before_reading_the_body(app, client):
    for method, url in protected_requests(app):
        if url.startswith(f"{API}/public/"):
            continue
        response = client.open(
            url + BAD_QUERY, method=method, data=BAD_BODY, content_type="application/json", headers=FORGED
        )
        assert_error(response, 403, "Could not validate credentials")


def test_a_visitor_without_the_token_gets_401_not_a_422_for_a_bad_body(client):
    conversation_id, _token = start_conversation(client, make_workspace().handle)
    url = f"{API}/public/conversations/{conversation_id}/messages"
    for headers in ({}, {"X-Visitor-Token": "wrong"}):
        response = client.post(url, json={"content": ""}, headers=headers)
        assert_error(response, 401)
        response = client.get(url + "?limit=abc", headers=headers)
        assert_error(response, 401)


# --- the per-conversation message budget -------------------------------------------------


@pytest.fixture
def limited(app):
    with build_app(
        app, RATELIMIT_ENABLED=True, PUBLIC_MESSAGE_RATE_LIMIT_PER_CONVERSATION="2/minute"
    ) as other:
        yield other


def test_rejected_messages_do_not_spend_the_conversation_budget(limited):
    client = limited.test_client()
    conversation_id, token = start_conversation(client, make_workspace().handle)
    for bad in ("", "   ", "x" * 4001):
        assert_error(post_message(client, conversation_id, token, bad), 422)
    response = client.post(
        f"{API}/public/conversations/{conversation_id}/messages",
        data="{oops",
        content_type="application/json",
        headers={"X-Visitor-Token": token},
    )
    assert_error(response, 400, "Malformed JSON body")
    assert post_message(client, conversation_id, token, "one").status_code == 201
    assert post_message(client, conversation_id, token, "two").status_code == 201
    assert_error(post_message(client, conversation_id, token, "three"), 429, "Too many requests")


def test_an_idempotent_replay_answers_200_while_the_conversation_is_limited(limited):
    client = limited.test_client()
    conversation_id, token = start_conversation(client, make_workspace().handle)
    first = post_message(client, conversation_id, token, "one", idempotency_key="k-1")
    assert first.status_code == 201
    assert post_message(client, conversation_id, token, "two", idempotency_key="k-2").status_code == 201
    assert_error(post_message(client, conversation_id, token, "three", idempotency_key="k-3"), 429)
    replay = post_message(client, conversation_id, token, "one", idempotency_key="k-1")
    assert replay.status_code == 200
    assert replay.get_json()["message"]["id"] == first.get_json()["message"]["id"]
    assert replay.get_json()["run"]["id"] == first.get_json()["run"]["id"]
    # A replay with other content is still a conflict, limited or not.
    assert_error(post_message(client, conversation_id, token, "other", idempotency_key="k-1"), 409)


def test_retry_after_is_the_time_left_in_the_window_and_only_on_429s(app):
    with build_app(
        app,
        RATELIMIT_ENABLED=True,
        PUBLIC_MESSAGE_RATE_LIMIT_PER_CONVERSATION="1/hour",
        PUBLIC_RATE_LIMIT_PER_IP="2/hour",
    ) as limited:
        client = limited.test_client()
        workspace = make_workspace()
        conversation_id, token = start_conversation(client, workspace.handle)
        accepted = post_message(client, conversation_id, token, "one")
        assert accepted.status_code == 201
        assert "Retry-After" not in accepted.headers
        refused = post_message(client, conversation_id, token, "two")
        assert_error(refused, 429)
        assert 3500 < int(refused.headers["Retry-After"]) <= 3600
        # A decorator limit (per IP) tells its own window, not a fixed minute.
        url = f"{API}/public/workspaces/{workspace.handle}"
        here = {"REMOTE_ADDR": "10.9.9.9"}
        ok = client.get(url, environ_base=here)
        assert ok.status_code == 200 and "Retry-After" not in ok.headers
        client.get(url, environ_base=here)
        refused = client.get(url, environ_base=here)
        assert_error(refused, 429)
        assert 3500 < int(refused.headers["Retry-After"]) <= 3600
