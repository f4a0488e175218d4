"""Domain exceptions and the one JSON error shape: {"detail": str, "errors"?: {...}}."""

import logging
import math
import time

import redis
from flask import Flask, current_app, jsonify
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


TOO_MANY_REQUESTS = "Too many requests"


class AppError(Exception):
    """A domain error that maps to one HTTP status and a human-readable detail."""

    status_code = 400

    def __init__(
        self,
        detail: str,
        status_code: int | None = None,
        errors: dict | None = None,
        headers: dict | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code
        self.errors = errors
        self.headers = headers or {}


class BadRequest(AppError):
    status_code = 400


class Unauthorized(AppError):
    status_code = 401


class Forbidden(AppError):
    status_code = 403


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class ValidationFailed(AppError):
    status_code = 422

    def __init__(self, errors: dict, detail: str = "Validation error"):
        super().__init__(detail, errors=errors)


def not_found(thing: str) -> NotFound:
    return NotFound(f"{thing} not found")


def error_response(status: int, detail: str, errors: dict | None = None, headers: dict | None = None):
    body: dict[str, object] = {"detail": detail}
    if errors is not None:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _flatten_webargs_messages(messages: dict) -> dict:
    """webargs nests messages by location ({"json": {"field": [...]}}) and marshmallow by
    nested field or list index; API.md wants field name -> list of messages, so messages
    about a nested part keep the top-level field as key and name the part in the text
    ({"tags": ["3: Not a valid string."]})."""
    flat: dict = {}

    def texts(value, prefix: str = "") -> list[str]:
        if isinstance(value, dict):
            return [t for key, inner in value.items() for t in texts(inner, f"{prefix}{key}: ")]
        if isinstance(value, list):
            return [t for item in value for t in texts(item, prefix)]
        return [f"{prefix}{value}"]

    for location_messages in messages.values():
        if isinstance(location_messages, dict):
            for field, value in location_messages.items():
                flat.setdefault(str(field), []).extend(texts(value))
        else:
            flat.setdefault("_schema", []).extend(texts(location_messages))
    return flat


DEFAULT_DETAILS = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Request body too large (limit is 1 MiB)",
    415: "Unsupported media type: send JSON",
    429: "Too many requests",
}


def http_error_response(error: HTTPException):
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    if status == 422 and "messages" in data:
        return error_response(422, "Validation error", _flatten_webargs_messages(data["messages"]))
    if status == 429:
        return _rate_limited_response()
    headers = {}
    valid_methods = getattr(error, "valid_methods", None) if status == 405 else None
    if valid_methods:
        headers["Allow"] = ", ".join(valid_methods)
    return error_response(status, _http_error_detail(error, status, data), headers=headers)


def _http_error_detail(error: HTTPException, status: int, data: dict) -> str:
    """The view's own message, else ours for the status, else Werkzeug's description."""
    detail = data.get("message") if isinstance(data.get("message"), str) else None
    # webargs reports an unparsable body as messages={"json": ["Invalid JSON body."]}.
    if status == 400 and detail is None and "JSON" in (error.description or "") + str(data.get("messages")):
        detail = "Malformed JSON body"
    if detail is None:
        detail = DEFAULT_DETAILS.get(status) or (error.description or error.name)
    return detail


def too_many_requests(reset_at: float) -> AppError:
    """A 429 whose Retry-After is the number of seconds until the window resets."""
    seconds = max(1, math.ceil(reset_at - time.time()))
    return AppError(TOO_MANY_REQUESTS, status_code=429, headers={"Retry-After": str(seconds)})


def _rate_limited_response():
    """429 from a Flask-Limiter decorator; Retry-After from the breached limit's window."""
    breached = next(
        (limit for limiter in current_app.extensions.get("limiter", ()) if (limit := limiter.current_limit)),
        None,
    )
    try:
        reset_at = breached.window.reset_time if breached is not None else time.time() + 60
    except Exception:  # its storage went away between the check and this answer
        reset_at = time.time() + 60
    error = too_many_requests(reset_at)
    return error_response(429, error.detail, headers=error.headers)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(AppError)
    def handle_app_error(error: AppError):
        return error_response(error.status_code, error.detail, error.errors, error.headers)

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException):
        return http_error_response(error)

    @app.errorhandler(IntegrityError)
    def handle_integrity_error(error: IntegrityError):
        rollback_session()
        log.warning("integrity error: %s", error.orig)
        return error_response(409, "Conflict with existing data")

    @app.errorhandler(DBAPIError)
    def handle_database_error(error: DBAPIError):
        rollback_session()
        if not is_database_outage(error):
            log.exception("unhandled database error")
            return error_response(500, "Internal server error")
        log.warning("database unreachable: %s", error.orig)
        return service_unavailable("the database")

    @app.errorhandler(PoolTimeoutError)
    def handle_database_busy(error: PoolTimeoutError):
        rollback_session()
        log.warning("no database connection free in time: %s", error)
        return service_unavailable("the database", busy=True)

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def handle_redis_outage(error: redis.RedisError):
        rollback_session()
        log.warning("redis unreachable: %s", error)
        return service_unavailable("Redis")

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        rollback_session()
        log.exception("unhandled error")
        return error_response(500, "Internal server error")


def is_database_outage(error: BaseException) -> bool:
    """A lost or refused database connection (a restart, a failover), not a bad query."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


OUTAGE_RETRY_AFTER_SECONDS = 5


def service_unavailable(what: str, busy: bool = False):
    """503 in the one JSON shape, for a dependency that is down or saturated for now (every
    pooled connection taken past the pool's timeout); clients retry."""
    state = "busy" if busy else "unreachable"
    return error_response(
        503,
        f"Service temporarily unavailable: {what} is {state}, try again shortly",
        headers={"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)},
    )


def rollback_session() -> None:
    """Rolls back the app's database session (Flask-SQLAlchemy keeps it in app.extensions);
    with the database gone the rollback itself may fail, which changes nothing."""
    try:
        current_app.extensions["sqlalchemy"].session.rollback()
    except Exception:  # noqa: BLE001
        log.warning("rollback failed", exc_info=True)
