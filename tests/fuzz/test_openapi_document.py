"""What the OpenAPI document promises about errors, checked against the document itself and,
for rate limits (off in the other tests), against an app with tiny limits: every operation
documented with 429 answers one that conforms (body and Retry-After), and no other does."""

import re

import pytest
import schemathesis

from backend.api.openapi import CONFLICTS, EXTRAS, IMAGE_UPLOAD_PATHS
from tests.fuzz.checks import CHECKS
from tests.test_errors import build_app

API = "/api/v1"
RATE_LIMITED_PREFIXES = (f"{API}/public/", f"{API}/login/access-token", f"{API}/password-recovery/")
RATE_LIMITED_PATHS = (f"{API}/reset-password/",)


@pytest.fixture
def spec(client):
    return client.get(f"{API}/openapi.json").get_json()


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation, item.get("parameters", []) + operation.get("parameters", [])


def resolve(spec, response):
    if "$ref" in response:
        return spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    return response


def test_error_schema_is_the_one_error_shape(spec):
    assert spec["components"]["schemas"]["Error"] == {
        "type": "object",
        "properties": {
            "detail": {"type": "string"},
            "errors": {
                "type": "object",
                "description": "422 only: field name -> list of messages",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
        },
        "required": ["detail"],
        "additionalProperties": False,
    }


def test_every_error_response_is_documented_with_the_error_schema(spec):
    for path, method, operation, _parameters in operations(spec):
        assert "default" not in operation["responses"], (method, path)
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and not (path.endswith("/health-check/") and status == "503"):
                content = resolve(spec, response)["content"]
                assert content == {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}, (
                    method,
                    path,
                    status,
                )


def test_statuses_follow_from_what_a_route_takes(spec):
    for path, method, operation, parameters in operations(spec):
        statuses = set(operation["responses"])
        where = (method, path, sorted(statuses))
        security = operation.get("security", [])
        if {"bearerAuth": []} in security:
            assert {"400", "401", "403", "404"} <= statuses, where
        if path.startswith(f"{API}/public/conversations/"):
            assert security == [{"visitorToken": []}, {"visitorTokenQuery": []}], where
            assert "401" in statuses, where
        if any(p["in"] == "path" for p in parameters):
            assert "404" in statuses, where
        body = operation.get("requestBody")
        if body is not None:
            assert {"413", "422"} <= statuses, where
            if "application/json" in body["content"]:
                assert {"400", "415"} <= statuses, where
            else:
                # Only an image upload tells another media type apart (an image of another type).
                assert ("415" in statuses) == (path in IMAGE_UPLOAD_PATHS), where
                assert "multipart/form-data" in body["content"] or "415" not in statuses, where
        if any(p["in"] == "query" for p in parameters):
            assert "422" in statuses, where
        rate_limited = path.startswith(RATE_LIMITED_PREFIXES) or path in RATE_LIMITED_PATHS
        assert ("429" in statuses) == rate_limited, where
    assert {"bearerAuth", "visitorToken", "visitorTokenQuery"} == set(spec["components"]["securitySchemes"])


def test_special_routes_are_described(spec):
    paths = spec["paths"]
    stream = paths[f"{API}/public/conversations/{{conversation_id}}/stream"]["get"]
    assert list(stream["responses"]["200"]["content"]) == ["text/event-stream"]
    assert {p["name"] for p in stream["parameters"]} >= {"Last-Event-ID", "last_event_id"}
    listing = paths[f"{API}/public/conversations/{{conversation_id}}/messages"]["get"]
    assert {p["name"] for p in listing["parameters"] if p["in"] == "query"} == {"since", "limit"}
    for name in ("ServiceCreate", "ServiceUpdate", "ServicePublic", "VisitorService"):
        price = spec["components"]["schemas"][name]["properties"]["starting_price"]
        assert price["type"] == "string" and price["pattern"].startswith("^[0-9]"), (name, price)
        assert not {"minimum", "maximum"} & set(price), (name, price)
    # The per-route tables name operations that exist.
    for method, path in [*CONFLICTS, *EXTRAS]:
        assert method in paths.get(path, {}), (method, path)


def test_a_body_is_required_only_when_the_route_needs_one(client, spec, world):
    """A route whose body schema has no required field reads a missing body as `{}`."""
    headers = {"Authorization": f"Bearer {world.token('owner')}"}
    workspace = f"{API}/workspaces/{world.workspace_id}"
    assert client.patch(workspace, headers=headers).status_code == 200
    assert spec["paths"][f"{API}/workspaces/{{workspace_id}}"]["patch"]["requestBody"]["required"] is False
    services = f"{API}/workspace-services/workspaces/{world.workspace_id}"
    assert client.post(services, headers=headers).status_code == 422
    assert spec["paths"][f"{API}/workspace-services/workspaces/{{workspace_id}}"]["post"]["requestBody"][
        "required"
    ]


def _credentials(world, path: str, operation: dict) -> dict:
    security = str(operation.definition.raw.get("security", []))
    if "visitorToken" in security:
        return {"X-Visitor-Token": world.visitor_token}
    if "bearerAuth" in security:
        role = "superuser" if path.startswith(f"{API}/users/{{user_id}}") else "owner"
        return {"Authorization": f"Bearer {world.token(role)}"}
    return {}


def test_rate_limits_are_documented_where_they_apply(app, world, request_counter):
    limits = "2/minute"
    overrides = dict(
        RATELIMIT_ENABLED=True,
        LOGIN_RATE_LIMIT=limits,
        PUBLIC_RATE_LIMIT_PER_IP=limits,
        PUBLIC_CONVERSATION_RATE_LIMIT_PER_IP=limits,
        PUBLIC_MESSAGE_RATE_LIMIT_PER_CONVERSATION=limits,
        SSE_MAX_SECONDS=0.05,
        SSE_HEARTBEAT_SECONDS=0.05,
    )
    with build_app(app, **overrides) as limited:
        schema = schemathesis.openapi.from_wsgi(f"{API}/openapi.json", limited)
        for result in schema.get_all_operations():
            operation = result.ok()
            ids = world.path_ids("superuser" if operation.path.startswith(f"{API}/users/") else "owner")
            if operation.path.startswith(f"{API}/public/conversations/"):
                ids = world.path_ids("visitor")
            # Real ids: the request reaches the route's own work.
            path_parameters = {
                name: ids.get(name, ["x"])[0] for name in re.findall(r"{(\w+)}", operation.path)
            }
            content = operation.definition.raw.get("requestBody", {}).get("content", {})
            if content:
                case = operation.Case(
                    path_parameters=path_parameters, body={}, media_type=next(iter(content))
                )
            else:
                case = operation.Case(path_parameters=path_parameters)
            headers = _credentials(world, operation.path, operation)
            documented = "429" in operation.definition.raw["responses"]
            statuses = []
            for _ in range(4):
                response = case.call(headers=headers)
                request_counter("rate-limits", operation.label, response.status_code)
                statuses.append(response.status_code)
                if response.status_code < 400 and operation.method.upper() != "GET":
                    world.restore()
                if response.status_code == 429:
                    case.validate_response(response, checks=CHECKS, headers=headers)
                    break
            assert (429 in statuses) == documented, (operation.label, statuses)
