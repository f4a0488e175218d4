"""The visitor demo page /chat/<handle> and its assets (the browser test is in tests/e2e)."""

import pytest

from backend.seed import seed_demo
from tests.factories import make_workspace


@pytest.fixture
def demo():
    return seed_demo("demo-password-123")


def test_page_for_a_seeded_handle(client, demo):
    response = client.get("/chat/demo")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert 'data-handle="demo"' in html
    assert 'data-api="/api/v1/public"' in html
    assert '<script src="/static/chat/chat.js"></script>' in html
    assert 'href="/static/chat/chat.css"' in html
    for hook in ('id="chat-form"', 'id="chat-input"', 'id="chat-log"', 'role="log"', 'id="services"'):
        assert hook in html
    assert "Harbor Street Physiotherapy" in html
    assert "<script>" not in html  # no inline code: the CSP forbids it
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp


def test_assets_are_served(client):
    js = client.get("/static/chat/chat.js")
    assert js.status_code == 200 and "javascript" in js.mimetype
    source = js.get_data(as_text=True)
    for hook in ("new EventSource(", "X-Visitor-Token", "idempotency_key", "last_event_id", "localStorage"):
        assert hook in source
    js.close()
    css = client.get("/static/chat/chat.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    css.close()


def test_only_the_chat_assets_are_served(client):
    for path in ("/static/chat/seed.py", "/static/chat/..%2F..%2Fconfig.py", "/static/chat/"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.is_json


@pytest.mark.parametrize("handle", ["no-such-shop", "Demo", "a--b", "x" * 70])
def test_unknown_or_malformed_handle_is_a_json_404(client, demo, handle):
    response = client.get(f"/chat/{handle}")
    assert response.status_code == 404
    assert response.get_json() == {"detail": "Workspace not found"}


def test_inactive_workspace_is_a_404(client):
    make_workspace(handle="closed-shop", is_active=False)
    response = client.get("/chat/closed-shop")
    assert response.status_code == 404
    assert response.get_json() == {"detail": "Workspace not found"}


def test_names_are_escaped(client):
    make_workspace(handle="tricky", public_name='<img src=x onerror="alert(1)">')
    html = client.get("/chat/tricky").get_data(as_text=True)
    assert '<img src=x onerror="alert(1)">' not in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html


def test_the_inbox_page_and_its_assets(client):
    response = client.get("/inbox")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert '<script src="/static/chat/inbox.js"></script>' in html
    assert 'href="/static/chat/inbox.css"' in html
    for hook in ('id="login-form"', 'id="conversations"', 'id="takeover"', 'id="release"', 'id="reply-form"'):
        assert hook in html
    assert "<script>" not in html
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    js = client.get("/static/chat/inbox.js")
    assert js.status_code == 200 and "javascript" in js.mimetype
    source = js.get_data(as_text=True)
    for hook in ("/events/ticket", "new EventSource(", "last_event_id", '"takeover"', '"release"'):
        assert hook in source
    js.close()
    css = client.get("/static/chat/inbox.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    css.close()
