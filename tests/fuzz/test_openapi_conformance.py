"""Schemathesis over every operation of /api/v1/openapi.json, in-process against the Flask
app: the document must describe what the API answers (status codes, content types, bodies
and headers), and no input may cause a 5xx.

Each role runs every operation it can reach with a bounded budget: an owner (with a
workspace full of objects), a superuser (who never gets its own id, so it cannot demote,
deactivate or delete itself), a visitor (a real visitor token and conversation), and an
anonymous caller. Most generated path ids are replaced by real ones, so requests reach
the objects and not only the 404s. Whatever a request deletes or switches off is put back
before the next one (tests/fuzz/world.py).

FUZZ_SEED=<int> explores other inputs; by default the inputs are the same on every run.
"""

import os
import zlib

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.fuzz.checks import CHECKS
from tests.fuzz.world import HANDLE, PASSWORD

SEED = int(os.environ.get("FUZZ_SEED", "20261202"))
# Examples per operation in the fuzzing phase (the coverage and examples phases add their
# own deterministic cases).
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "20"))
FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
READ_METHODS = ("GET", "HEAD", "OPTIONS")


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none", "deterministic": True},
            "phases": {
                "examples": {"enabled": True},
                # Methods a path does not document answer 405: not what this test is about.
                "coverage": {"enabled": True, "unexpected-methods": []},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
        }
    )


@pytest.fixture
def api_schema(app, world, short_streams):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=_config())


owner_schema = schemathesis.pytest.from_fixture("api_schema")
superuser_schema = schemathesis.pytest.from_fixture("api_schema").include(
    lambda ctx: (
        bool(ctx.operation.definition.raw.get("security"))
        and "bearerAuth" in str(ctx.operation.definition.raw.get("security"))
    )
)
visitor_schema = schemathesis.pytest.from_fixture("api_schema").include(path_regex="^/api/v1/public/")
anonymous_schema = schemathesis.pytest.from_fixture("api_schema")


def _pick(case, salt: str) -> int:
    """A number that depends only on the generated input (stable across Hypothesis replays)."""
    seen = (case.method, case.path, salt, sorted((case.path_parameters or {}).items()), repr(case.body))
    return zlib.crc32(repr(seen).encode())


def _real_body(case, world) -> None:
    """Some bodies name real things: a workspace handle, the owner's credentials."""
    if not isinstance(case.body, dict) or _pick(case, "body") % 2:
        return
    if case.path.endswith("/public/conversations"):
        case.body["workspace_handle"] = HANDLE
    elif case.path.endswith("/login/access-token"):
        case.body.update(username=world.emails[world.owner_id], password=PASSWORD)
    elif case.path.endswith("/push-tokens") and case.method.upper() == "POST":
        case.body["token"] = f"ExponentPushToken[fuzz-{_pick(case, 'token') % 1000}]"
    elif "/connectors/" in case.path and case.method.upper() in ("POST", "PATCH"):
        case.body.update(type="calendly", config={"link": "https://calendly.com/fuzz-shop/intro"})


def _exercise(case, world, role: str, count, headers: dict | None = None) -> None:
    if case.path_parameters:
        case.path_parameters = world.substitute(role, case.path_parameters)
    _real_body(case, world)
    response = case.call(headers=headers)
    count(role, case.operation.label, response.status_code)
    if case.method.upper() not in READ_METHODS and response.status_code < 400:
        world.restore()
    case.validate_response(response, checks=CHECKS, headers=headers)


@owner_schema.parametrize()
@FUZZ_SETTINGS
def test_owner(case, world, request_counter):
    _exercise(case, world, "owner", request_counter, {"Authorization": f"Bearer {world.token('owner')}"})


@superuser_schema.parametrize()
@FUZZ_SETTINGS
def test_superuser(case, world, request_counter):
    _exercise(
        case, world, "superuser", request_counter, {"Authorization": f"Bearer {world.token('superuser')}"}
    )


@visitor_schema.parametrize()
@FUZZ_SETTINGS
def test_visitor(case, world, request_counter):
    # The token travels as the header, as the query parameter, or (rarely) not at all.
    how = _pick(case, "token") % 10
    if how < 6:
        _exercise(case, world, "visitor", request_counter, {"X-Visitor-Token": world.visitor_token})
    else:
        if how < 9:
            case.query = {**(case.query or {}), "visitor_token": world.visitor_token}
        _exercise(case, world, "visitor", request_counter)


@anonymous_schema.parametrize()
@FUZZ_SETTINGS
def test_anonymous(case, world, request_counter):
    _exercise(case, world, "anonymous", request_counter)
