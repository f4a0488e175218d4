"""Headers every response carries, the chat page's framing rules, and /metrics behind
METRICS_TOKEN when one is set."""

import pytest

from backend.seed import seed_demo


@pytest.fixture
def demo():
    return seed_demo("demo-password-123")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/utils/health-check/",
        "/api/v1/users/me",  # 401
        "/no/such/page",  # JSON 404
        "/metrics",
        "/static/chat/chat.js",
        "/api/v1/openapi.json",
        "/api/v1/docs",
    ],
)
def test_every_response_says_nosniff_and_limits_the_referrer(client, path):
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in ("strict-origin-when-cross-origin", "no-referrer")
    response.close()


def test_the_chat_page_cannot_be_framed_and_keeps_its_strict_policy(client, demo):
    response = client.get("/chat/demo")
    assert response.status_code == 200
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    csp = [part.strip() for part in response.headers["Content-Security-Policy"].split(";")]
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp
    assert len(response.headers.getlist("Content-Security-Policy")) == 1


def test_other_html_pages_cannot_be_framed_either(client):
    response = client.get("/api/v1/docs")
    assert response.mimetype == "text/html"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


METRICS_TOKEN = "metrics-scrape-token-0123456789abcdef"


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", f"Basic {METRICS_TOKEN}", f"Bearer {METRICS_TOKEN}x"],
)
def test_metrics_need_the_token_when_one_is_set(app, client, monkeypatch, authorization):
    monkeypatch.setitem(app.config, "METRICS_TOKEN", METRICS_TOKEN)
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"detail": "Not authenticated"}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "assistant_runs_total" not in response.get_data(as_text=True)


def test_metrics_answer_the_right_token(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "METRICS_TOKEN", METRICS_TOKEN)
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200 and response.mimetype == "text/plain"


def test_metrics_stay_open_without_a_token(app, client):
    assert not app.config["METRICS_TOKEN"]
    assert client.get("/metrics").status_code == 200
