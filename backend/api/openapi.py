"""The OpenAPI document describes what the API answers: one error shape, every status a route
can give, the visitor token, the event stream. Not a Blueprint module (no `blp`).

`DocumentedResponses` is an apispec plugin that `ApiWithJsonErrors` (extensions.py) adds when
the spec is created. Its `operation_helper` runs once per route as each blueprint is
registered, after flask-smorest and the marshmallow plugin have built the operation, and
completes it from facts about the route instead of a decorator on every view:

- bearer-secured (`security: bearerAuth`): 400 (inactive user), 401, 403, 404 (deleted user);
- a public conversation route (`/public/conversations/{conversation_id}/...`): the visitor
  token as security (header `X-Visitor-Token` or query `visitor_token`) and 401;
- path arguments: 404; a request body: 413, 422 (and for JSON: 400 "Malformed JSON body", 415);
  query arguments: 422; a Flask-Limiter decorated view: 429 with `Retry-After`;
- 409 where a rule can refuse a write (`CONFLICTS`), and the per-route facts in `EXTRAS`;
- query arguments that a view's manual `@blp.doc(parameters=...)` hid are put back, and a
  request body is `required` only when its schema has a required field (otherwise the
  view reads a missing body as `{}`).

flask-smorest's catch-all `default` response is dropped: every status is listed.
"""

import copy
import inspect
from http import HTTPStatus

from apispec import APISpec, BasePlugin
from marshmallow import Schema, fields

ERROR_SCHEMA_NAME = "Error"
BEARER_SCHEME = "bearerAuth"
VISITOR_SCHEMES = ("visitorToken", "visitorTokenQuery")
VISITOR_ROUTE_PREFIX = "/api/v1/public/conversations/{conversation_id}"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class ErrorSchema(Schema):
    """Every error body of the API (errors.py): a human-readable `detail`, and for
    validation errors (422) `errors`, field name -> messages."""

    detail = fields.String(required=True)
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "422 only: field name -> list of messages"},
    )


def _error(description: str, headers: dict | None = None) -> dict:
    response = {
        "description": description,
        "content": {"application/json": {"schema": ERROR_SCHEMA_NAME}},
    }
    if headers:
        response["headers"] = headers
    return response


# Component name -> (status, response). Registered lazily: only referenced ones appear.
ERROR_RESPONSES = {
    "BadRequest": (
        400,
        _error(
            'Bad request: "Malformed JSON body", or a rule of the route refused the request '
            '(e.g. "Inactive user", "Incorrect email or password").'
        ),
    ),
    "BearerUnauthorized": (
        401,
        _error(
            'No access token: "Not authenticated".',
            {
                "WWW-Authenticate": {
                    "description": "`Bearer`",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
        ),
    ),
    "VisitorUnauthorized": (
        401,
        _error('Missing or invalid visitor token: "Missing or invalid visitor token".'),
    ),
    "Forbidden": (
        403,
        _error(
            'A malformed, forged, expired or revoked token ("Could not validate credentials"), '
            'another owner\'s workspace ("Not your workspace"), or a superuser-only route.'
        ),
    ),
    "NotFound": (
        404,
        _error(
            'Unknown or malformed id: "<Thing> not found" ("User not found" for a deleted user\'s token).'
        ),
    ),
    "Conflict": (409, _error("The request conflicts with the current state (detail says which).")),
    "PayloadTooLarge": (413, _error("The request body is over 1 MiB.")),
    "UnsupportedMediaType": (415, _error("The body is not in the media type the route reads.")),
    "ValidationError": (422, _error('Invalid input: "Validation error", with `errors` per field.')),
    "TooManyRequests": (
        429,
        _error(
            'Rate limit reached: "Too many requests".',
            {
                "Retry-After": {
                    "description": "Seconds to wait before trying again.",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            },
        ),
    ),
}

# What any bearer-secured route can answer before its own work: 400 "Inactive user",
# 401 without a token, 403 for a bad token or a foreign workspace, 404 for a deleted user.
BEARER_RESPONSES = {"400": "BadRequest", "401": "BearerUnauthorized", "403": "Forbidden", "404": "NotFound"}

# Routes whose rules can refuse a write with 409 (API.md and services/*).
CONFLICTS = {
    ("post", "/api/v1/workspaces/"): "The user already has a workspace, or the handle is taken.",
    ("get", "/api/v1/workspaces/me"): "Creating the workspace raced with another request.",
    ("patch", "/api/v1/workspaces/{workspace_id}"): "The handle is taken.",
    ("post", "/api/v1/connectors/workspaces/{workspace_id}"): "Another connector became active meanwhile.",
    ("patch", "/api/v1/connectors/{connector_id}"): "Another connector became active meanwhile.",
    ("post", "/api/v1/connectors/{connector_id}/activate"): "Another connector became active meanwhile.",
    ("post", "/api/v1/conversations/{conversation_id}/messages"): (
        "The timestamp is not later than the conversation's latest message."
    ),
    ("patch", "/api/v1/users/me"): "The email belongs to another user.",
    ("patch", "/api/v1/users/{user_id}"): "The email belongs to another user.",
    ("post", "/api/v1/public/conversations/{conversation_id}/messages"): (
        "The idempotency_key was already used for a different message."
    ),
    ("post", "/api/v1/public/conversations/{conversation_id}/runs/{run_id}/cancel"): (
        "The run already finished."
    ),
}

# Image uploads (multipart/form-data, backend/services/media.py): their own size limit, and
# 415 for an image of another type than JPEG, PNG or WebP.
IMAGE_UPLOAD_RESPONSES = {
    "413": _error("The image is over 5 MB."),
    "415": _error("An image of another type than JPEG, PNG or WebP."),
}
IMAGE_UPLOAD_PATHS = ("/api/v1/users/me/avatar", "/api/v1/workspaces/{workspace_id}/profile-image")
STREAM_PATH = f"{VISITOR_ROUTE_PREFIX}/stream"
INBOX_PATH = "/api/v1/workspaces/{workspace_id}/events"


def _cursor_parameters(resume: str) -> list[dict]:
    return [
        {
            "in": "header",
            "name": "Last-Event-ID",
            "required": False,
            "schema": {"type": "string"},
            "description": resume,
        },
        {
            "in": "query",
            "name": "last_event_id",
            "required": False,
            "schema": {"type": "string"},
            "description": "The same cursor as a query parameter, for EventSource.",
        },
    ]


_SSE_RESPONSE = {
    "description": (
        "Server-Sent Events: `id:`, `event:` and one-line JSON `data:` per event, "
        "`: ping` comments; closed after SSE_MAX_SECONDS."
    ),
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
    "headers": {
        "Cache-Control": {"required": True, "schema": {"type": "string", "enum": ["no-cache"]}},
        "X-Accel-Buffering": {"required": True, "schema": {"type": "string", "enum": ["no"]}},
    },
}
# Facts a route's decorators cannot state: inputs the view reads by hand, other media types.
EXTRAS: dict[tuple[str, str], dict] = {
    # A form body (no JSON), refused with 400 "Incorrect email or password" / "Inactive user".
    ("post", "/api/v1/login/access-token"): {"responses": {"400": "BadRequest"}},
    # workspace_handle names no active workspace: 404 "Workspace not found".
    ("post", "/api/v1/public/conversations"): {"responses": {"404": "NotFound"}},
    **{("post", path): {"responses": IMAGE_UPLOAD_RESPONSES} for path in IMAGE_UPLOAD_PATHS},
    ("get", STREAM_PATH): {
        "parameters": _cursor_parameters("Resume after this event id (a `stream_cursor` works too)."),
        "responses": {"200": _SSE_RESPONSE, "422": "ValidationError"},
    },
    # The owner's inbox: a ticket (from POST .../events/ticket) instead of the bearer token.
    ("get", INBOX_PATH): {
        "parameters": [
            {
                "in": "query",
                "name": "ticket",
                "required": False,
                "schema": {"type": "string"},
                "description": "A single-use ticket from `POST .../events/ticket`, for EventSource.",
            },
            *_cursor_parameters("Resume after this event id."),
        ],
        "responses": {
            "200": _SSE_RESPONSE,
            "401": _error(
                'No access token ("Not authenticated"), or a used, expired or another workspace\'s '
                'ticket ("Invalid or expired ticket").'
            ),
            "422": "ValidationError",
        },
    },
}


def decimal_string_properties(self, field, ret: dict, **kwargs) -> dict:
    """A `Decimal(as_string=True)` field is a JSON string ("19.99"), not a number; apispec
    would say `type: number` with the bounds as strings. The bounds are kept as x-minimum /
    x-maximum (still decimal strings). Registered with the marshmallow converter."""
    if not (isinstance(field, fields.Decimal) and field.as_string):
        return {}
    for key in ("minimum", "maximum"):
        if key in ret:
            ret[f"x-{key}"] = ret.pop(key)
    return {"type": "string", "format": "decimal"}


def _view_method(view, method: str):
    """The function that serves `method` (a MethodView's method, or the view itself)."""
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        return getattr(view_class, method, None)
    return view


def _unwrapped_chain(func):
    while func is not None:
        yield func
        func = getattr(func, "__wrapped__", None)


def _is_rate_limited(func) -> bool:
    # Flask-Limiter marks each `@limiter.limit` wrapper with this attribute; functools.wraps
    # carries it to the decorators above it.
    return any(getattr(f, "__wrapper-limiter-instance", None) is not None for f in _unwrapped_chain(func))


def _declared_arguments(func, location: str) -> list:
    """Schemas of the view's `@blp.arguments(..., location=location)`."""
    for f in _unwrapped_chain(func):
        doc = getattr(f, "_apidoc", None)
        if doc and "arguments" in doc:
            return [p["schema"] for p in doc["arguments"].get("parameters", []) if p.get("in") == location]
    return []


class DocumentedResponses(BasePlugin):
    """Completes every operation with the responses and inputs its route really has."""

    def __init__(self, app, ma_plugin):
        self.app = app
        self.ma_plugin = ma_plugin
        self.spec: APISpec | None = None

    def init_spec(self, spec) -> None:
        self.spec = spec
        spec.components.schema(ERROR_SCHEMA_NAME, schema=ErrorSchema)
        for name, (_status, response) in ERROR_RESPONSES.items():
            spec.components.response(name, copy.deepcopy(response), lazy=True)

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        rule = kwargs.get("rule")
        view = self.app.view_functions.get(rule.endpoint) if rule is not None else None
        for method, operation in (operations or {}).items():
            if method in HTTP_METHODS:
                self._complete(path, method, operation, _view_method(view, method), rule)

    def _complete(self, path: str, method: str, operation: dict, func, rule) -> None:
        responses = {str(status): r for status, r in operation.get("responses", {}).items()}
        responses.pop("default", None)
        self._restore_query_parameters(operation, func)
        extra = EXTRAS.get((method, path), {})
        bearer = any(BEARER_SCHEME in requirement for requirement in operation.get("security", []))
        parameters = _complete_parameters(path, operation, extra)
        add = dict(BEARER_RESPONSES) if bearer else {}
        if path.startswith(VISITOR_ROUTE_PREFIX):
            add["401"] = "VisitorUnauthorized"
        if rule is not None and rule.arguments:
            add["404"] = "NotFound"
        self._complete_body(operation, add)
        if any(p.get("in") == "query" for p in parameters):
            add["422"] = "ValidationError"
        if func is not None and _is_rate_limited(func):
            add["429"] = "TooManyRequests"
        if (method, path) in CONFLICTS:
            add["409"] = "Conflict"
        add.update(copy.deepcopy(extra.get("responses", {})))
        if not parameters:
            operation.pop("parameters", None)
        operation["responses"] = _merged_responses(responses, add)
        if (method, path) in CONFLICTS:
            operation.setdefault("description", "")
            note = f"409: {CONFLICTS[(method, path)]}"
            operation["description"] = f"{operation['description']}\n\n{note}".strip()

    def _complete_body(self, operation: dict, add: dict) -> None:
        body = operation.get("requestBody")
        if body is None:
            return
        add.update({"413": "PayloadTooLarge", "422": "ValidationError"})
        if "application/json" in body.get("content", {}):
            # The parser answers 400 to a malformed JSON body and 415 to another format
            # (a form route reads any other format as an empty form: 422).
            add.update({"400": "BadRequest", "415": "UnsupportedMediaType"})
        body["required"] = self._body_has_required_field(body)

    def _restore_query_parameters(self, operation: dict, func) -> None:
        """A manual `@blp.doc(parameters=[...])` replaces the parameters flask-smorest made from
        `@blp.arguments(..., location="query")`; put back the ones that went missing."""
        if func is None:
            return
        parameters = operation.setdefault("parameters", [])
        for schema in _declared_arguments(func, "query"):
            instance = schema() if inspect.isclass(schema) else schema
            for parameter in self.ma_plugin.converter.schema2parameters(instance, location="query"):
                _add_parameter(parameters, parameter)

    def _body_has_required_field(self, body: dict) -> bool:
        assert self.spec is not None  # init_spec runs before any path is completed
        for media in body.get("content", {}).values():
            schema = media.get("schema", {})
            if isinstance(schema, dict) and "$ref" in schema:
                schema = self.spec.components.schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
            elif not isinstance(schema, dict):
                return True
            if schema.get("required"):
                return True
        return False


def _complete_parameters(path: str, operation: dict, extra: dict) -> list:
    """The operation's parameters with the route's extra ones; a visitor route's token is a
    credential, documented as security schemes, not as a parameter."""
    parameters = operation.setdefault("parameters", [])
    for parameter in extra.get("parameters", []):
        _add_parameter(parameters, copy.deepcopy(parameter))
    if path.startswith(VISITOR_ROUTE_PREFIX):
        operation["parameters"] = parameters = [
            p for p in parameters if p.get("name") not in ("X-Visitor-Token", "visitor_token")
        ]
        operation["security"] = [{name: []} for name in VISITOR_SCHEMES]
    return parameters


def _merged_responses(responses: dict, add: dict) -> dict:
    for status, response in add.items():
        # A route's own success response stays; error references (strings) are replaced.
        if isinstance(response, dict) or isinstance(responses.get(status, ""), str):
            responses[status] = response
    for status, response in list(responses.items()):
        # flask-smorest's own error references (e.g. 422 from @blp.arguments) use our names.
        if isinstance(response, str) and response in HTTPStatus.__members__:
            responses[status] = _component_for(int(status)) or response
    return dict(sorted(responses.items()))


def _add_parameter(parameters: list, parameter: dict) -> None:
    if not any(p.get("name") == parameter["name"] and p.get("in") == parameter["in"] for p in parameters):
        parameters.append(parameter)


def _component_for(status: int) -> str | None:
    for name, (code, _response) in ERROR_RESPONSES.items():
        if code == status and name not in ("BearerUnauthorized", "VisitorUnauthorized"):
            return name
    return None
