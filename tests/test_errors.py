"""The one JSON error shape, for every status the API answers with."""

import json

import pytest
from sqlalchemy import text

from backend.extensions import db, limiter
from tests.factories import DEFAULT_PASSWORD, auth_headers, make_user
from tests.helpers import assert_error, build_app


def test_400_domain_error(client):
    make_user("taken@example.com")
    response = client.post("/api/v1/users/signup", json={"email": "taken@example.com", "password": "x" * 8})
    assert_error(response, 400, "The user with this email already exists in the system")


@pytest.mark.parametrize("body", ["{bad json", '{"email": ', "[1, 2", "\xff\xfe"])
def test_malformed_json_body_is_a_client_error(client, body):
    response = client.post(
        "/api/v1/users/signup", data=body.encode("latin-1"), content_type="application/json"
    )
    assert_error(response, 400, "Malformed JSON body")


def test_json_of_the_wrong_type_is_422(client):
    response = client.post("/api/v1/users/signup", data=json.dumps([1, 2]), content_type="application/json")
    assert_error(response, 422)


def test_401_without_token(client):
    response = client.get("/api/v1/users/me")
    assert_error(response, 401)


def test_403_not_enough_privileges(client):
    response = client.get("/api/v1/users/", headers=auth_headers(make_user()))
    assert_error(response, 403, "The user doesn't have enough privileges")


def test_404_unknown_paths_and_ids(client):
    assert_error(client.get("/api/v1/nothing-here"), 404)
    assert_error(client.get("/nowhere.html"), 404)
    admin = make_user(is_superuser=True)
    response = client.get("/api/v1/users/00000000-0000-0000-0000-000000000000", headers=auth_headers(admin))
    assert_error(response, 404, "User not found")


def test_405_wrong_method(client):
    response = client.get("/api/v1/login/access-token")
    assert_error(response, 405, "Method not allowed")
    assert "POST" in response.headers["Allow"]


def test_409_email_taken(client):
    make_user("first@example.com")
    user = make_user("second@example.com")
    response = client.patch(
        "/api/v1/users/me", json={"email": "first@example.com"}, headers=auth_headers(user)
    )
    assert_error(response, 409, "User with this email already exists")


def test_413_body_over_one_mib(client):
    payload = json.dumps({"email": "big@example.com", "password": "x" * 8, "bio": "a" * (1024 * 1024 + 10)})
    response = client.post("/api/v1/users/signup", data=payload, content_type="application/json")
    assert_error(response, 413)


def test_422_lists_field_errors(client):
    response = client.post("/api/v1/users/signup", json={"email": "not-an-email", "password": "short"})
    body = assert_error(response, 422, "Validation error")
    assert set(body["errors"]) == {"email", "password"}
    assert all(isinstance(msgs, list) and msgs for msgs in body["errors"].values())


def test_422_on_bad_query_args(client):
    admin = make_user(is_superuser=True)
    response = client.get("/api/v1/users/?limit=1001", headers=auth_headers(admin))
    assert "limit" in assert_error(response, 422)["errors"]
    response = client.get("/api/v1/users/?skip=-1", headers=auth_headers(admin))
    assert "skip" in assert_error(response, 422)["errors"]


def test_429_login_rate_limit(app):
    with build_app(app, RATELIMIT_ENABLED=True, LOGIN_RATE_LIMIT="3/minute") as limited:
        client = limited.test_client()
        make_user("limited@example.com")
        form = {"username": "limited@example.com", "password": "wrong-password"}
        for _ in range(3):
            assert client.post("/api/v1/login/access-token", data=form).status_code == 400
        response = client.post("/api/v1/login/access-token", data=form)
        assert_error(response, 429, "Too many requests")
        assert int(response.headers["Retry-After"]) > 0
        # Even the right password waits: the limit is per client, not per failure.
        form["password"] = DEFAULT_PASSWORD
        assert client.post("/api/v1/login/access-token", data=form).status_code == 429
    # The session app (rate limiting off) is unaffected afterwards.
    assert not limiter.enabled


def test_500_is_json_without_a_trace(app):
    with build_app(app) as other:

        def explode():
            raise RuntimeError("secret internals")

        other.add_url_rule("/api/v1/test-explode", "test_explode", explode)
        response = other.test_client().get("/api/v1/test-explode")
        body = assert_error(response, 500, "Internal server error")
        assert "secret internals" not in response.get_data(as_text=True)
        assert "errors" not in body
    # The session's database session still works after the rollback.
    assert db.session.execute(text("SELECT 1")).scalar() == 1


def test_nul_character_in_input_is_422_not_500(client):
    user = make_user()
    response = client.patch("/api/v1/users/me", json={"full_name": "a\x00b"}, headers=auth_headers(user))
    assert_error(response, 422)
    response = client.post("/api/v1/login/access-token", data={"username": "a\x00@x.com", "password": "x"})
    assert response.status_code in (400, 422)
    assert client.post("/api/v1/password-recovery/a%00b@example.com").status_code == 200


def test_nested_validation_messages_stay_under_their_top_level_field(client):
    """API.md: `errors` maps a field name to a list of messages, also for nested parts."""
    from backend.errors import _flatten_webargs_messages

    nested = {
        "json": {
            "name": ["Missing data for required field."],
            "config": {"link": ["Must be an https URL."]},
            "tags": {3: ["Not a valid string."]},
        }
    }
    assert _flatten_webargs_messages(nested) == {
        "name": ["Missing data for required field."],
        "config": ["link: Must be an https URL."],
        "tags": ["3: Not a valid string."],
    }
    for messages in _flatten_webargs_messages(nested).values():
        assert all(isinstance(message, str) for message in messages)


def test_database_and_redis_outages_are_json_503_and_other_database_errors_500(app):
    """A lost database or Redis connection is a 503 the client can retry (never a 500 with a
    trace); a database error that is not an outage stays a plain 500."""
    import redis
    from sqlalchemy.exc import OperationalError, ProgrammingError

    raised = {
        "db-down": OperationalError("SELECT 1", {}, Exception("server closed the connection")),
        "db-invalidated": ProgrammingError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
        "db-bug": ProgrammingError("SELEKT", {}, Exception("syntax error at or near SELEKT")),
        "redis-down": redis.ConnectionError("Error 111 connecting to 127.0.0.1:6390"),
        "redis-slow": redis.TimeoutError("Timeout reading from socket"),
    }
    with build_app(app) as other:
        for name, error in raised.items():

            def explode(error=error):
                raise error

            other.add_url_rule(f"/api/v1/test-{name}", f"test_{name}", explode)
        client = other.test_client()
        for name in ("db-down", "db-invalidated"):
            response = client.get(f"/api/v1/test-{name}")
            assert "the database is unreachable" in assert_error(response, 503)["detail"]
            assert response.headers["Retry-After"] == "5"
            assert "server closed" not in response.get_data(as_text=True)
        for name in ("redis-down", "redis-slow"):
            response = client.get(f"/api/v1/test-{name}")
            assert "Redis is unreachable" in assert_error(response, 503)["detail"]
        response = client.get("/api/v1/test-db-bug")
        assert_error(response, 500, "Internal server error")
        assert "SELEKT" not in response.get_data(as_text=True)
    assert db.session.execute(text("SELECT 1")).scalar() == 1


def test_a_request_that_finds_every_database_connection_taken_is_a_json_503(app):
    """A burst that holds every pooled connection past the pool's timeout makes the next
    request a 503 the client can retry, not a 500; it gets its answer once one is free."""
    with build_app(
        app, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.2}
    ) as other:
        client = other.test_client()
        with other.app_context():
            held = db.engine.connect()  # the pool's only connection
        try:
            health = client.get("/api/v1/utils/health-check/")
            assert health.status_code == 503 and health.get_json()["database"] == "error"
            response = client.get("/api/v1/public/workspaces/nobody-here")
            detail = assert_error(response, 503)["detail"]
            assert detail == "Service temporarily unavailable: the database is busy, try again shortly"
            assert response.headers["Retry-After"] == "5"
        finally:
            held.close()
        assert_error(client.get("/api/v1/public/workspaces/nobody-here"), 404)
