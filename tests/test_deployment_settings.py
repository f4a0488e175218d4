"""Settings that matter once the app runs behind proxies and next to a flaky Redis."""

from flask import request

from tests.factories import DEFAULT_PASSWORD, make_user
from tests.helpers import build_app


def test_client_ip_comes_from_the_trusted_proxy_hop(app):
    with build_app(app, TRUSTED_PROXY_HOPS=1) as proxied:
        proxied.add_url_rule("/whoami", "whoami", lambda: {"ip": request.remote_addr})
        response = proxied.test_client().get("/whoami", headers={"X-Forwarded-For": "203.0.113.9"})
        assert response.json == {"ip": "203.0.113.9"}


def test_forwarded_for_is_ignored_without_trusted_proxies(app):
    with build_app(app, TRUSTED_PROXY_HOPS=0) as direct:
        direct.add_url_rule("/whoami", "whoami", lambda: {"ip": request.remote_addr})
        response = direct.test_client().get("/whoami", headers={"X-Forwarded-For": "203.0.113.9"})
        assert response.json == {"ip": "127.0.0.1"}


def test_rate_limits_fail_open_when_their_redis_is_down(app):
    user = make_user()
    with build_app(app, RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="redis://127.0.0.1:6390/0") as limited:
        with limited.app_context():
            response = limited.test_client().post(
                "/api/v1/login/access-token", data={"username": user.email, "password": DEFAULT_PASSWORD}
            )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["token_type"] == "bearer"


def test_a_visitor_message_is_saved_and_answered_201_while_redis_is_down(app):
    import time

    from backend.extensions import db
    from backend.models import AgentRun, ConversationMessage
    from backend.services import chat
    from tests.factories import make_workspace

    conversation, token = chat.start_conversation(make_workspace().handle, None)
    dead = "redis://127.0.0.1:6390/0"
    with build_app(
        app, REDIS_URL=dead, CELERY_BROKER_URL=dead, RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI=dead
    ) as broken:
        broken.extensions["celery"].conf.broker_connection_max_retries = 0
        started = time.monotonic()
        with broken.app_context():
            response = broken.test_client().post(
                f"/api/v1/public/conversations/{conversation.id}/messages",
                json={"content": "Are you open today?", "idempotency_key": "k-1"},
                headers={"X-Visitor-Token": token},
            )
        elapsed = time.monotonic() - started
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["stream_cursor"] is None and body["run"]["status"] == "queued"
    assert elapsed < 15
    db.session.expire_all()
    assert db.session.get(ConversationMessage, body["message"]["id"]).content == "Are you open today?"
    assert db.session.get(AgentRun, body["run"]["id"]).status == "queued"  # recovery re-sends it
