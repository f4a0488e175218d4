"""Hostile bodies against the real gunicorn gevent server: a chunked body past the
1 MiB limit is a 413 (no Content-Length to refuse it by), JSON nested past Python's
recursion limit a 400, a lone surrogate a 422; each a JSON error, nothing written."""

import requests
from sqlalchemy import func, select

from backend.extensions import db
from backend.models import Conversation


def _conversations() -> int:
    db.session.expire_all()
    return db.session.execute(select(func.count()).select_from(Conversation)).scalar_one()


def _chunks(total: int, size: int = 64 * 1024):
    yield b'{"workspace_handle": "'
    for _ in range(total // size):
        yield b"a" * size
    yield b'"}'


def test_a_chunked_body_over_the_limit_is_a_413(stack):
    response = requests.post(
        stack.api("/public/conversations"),
        data=_chunks(3 * 1024 * 1024),  # a generator: sent with Transfer-Encoding: chunked
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["detail"]
    assert _conversations() == 0


def test_deep_json_and_lone_surrogates_are_client_errors(stack):
    url = stack.api("/public/conversations")
    headers = {"Content-Type": "application/json"}
    deep = requests.post(url, data="[" * 50_000 + "]" * 50_000, headers=headers, timeout=30)
    assert deep.status_code == 400 and deep.json() == {"detail": "Malformed JSON body"}
    huge = requests.post(url, data='{"workspace_handle": ' + "9" * 5000 + "}", headers=headers, timeout=30)
    assert huge.status_code == 400 and huge.json() == {"detail": "Malformed JSON body"}
    surrogate = requests.post(
        url, data='{"workspace_handle": "demo", "visitor_name": "\\ud800"}', headers=headers, timeout=30
    )
    assert surrogate.status_code == 422 and list(surrogate.json()["errors"]) == ["visitor_name"]
    assert _conversations() == 0
