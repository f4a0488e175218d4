"""Health check and utilities (and the vendored Swagger UI files the docs page loads)."""

import logging

from flask import jsonify, send_from_directory
from marshmallow import Schema, fields
from sqlalchemy import text
from swagger_ui_bundle import swagger_ui_path

from backend.api.access import authenticated
from backend.api.parsing import Blueprint
from backend.extensions import db, redis_client
from backend.schemas.common import MessageSchema
from backend.schemas.user import TestEmailArgsSchema
from backend.services import email as email_service

URL_PREFIX = "/utils"
blp = Blueprint("utils", __name__, description="Health check and utilities.")
SWAGGER_UI_STATIC = "/api/v1/static/swagger-ui/<path:filename>"
log = logging.getLogger(__name__)


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"description": '"ok", or "error" (with 503)'})
    database = fields.String(required=True)
    redis = fields.String(required=True)
    detail = fields.String(metadata={"description": "only when something is down"})


def _database_state() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except Exception:  # any failure means "down": reported in the body, not raised
        log.exception("health check: database is down")
        db.session.rollback()
        return "error"


def _redis_state() -> str:
    try:
        redis_client().ping()
        return "ok"
    except Exception:
        log.exception("health check: redis is down")
        return "error"


@blp.route("/health-check/", methods=["GET"])
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=HealthSchema, description="The database or Redis is down")
def health_check():
    """Report whether the database and Redis answer."""
    states = {"database": _database_state(), "redis": _redis_state()}
    down = [name for name, state in states.items() if state != "ok"]
    if not down:
        return {"status": "ok", **states}
    body = {"status": "error", **states, "detail": f"Service unavailable: {', '.join(down)} down"}
    response = jsonify(body)
    response.status_code = 503
    return response


@blp.route("/test-email/", methods=["POST"])
@authenticated(superuser=True)
@blp.arguments(TestEmailArgsSchema, location="query")
@blp.response(201, MessageSchema)
def test_email(args):
    """Send a test email to `email_to` (superuser only), through the same path as every email."""
    if not email_service.emails_enabled():
        return {"message": "Emails are not configured (SMTP_HOST is not set): nothing was sent"}
    email_service.send_test_email(args["email_to"])
    return {"message": "Test email sent"}


def _serve_swagger_ui(filename: str):
    """Swagger UI's JS/CSS from the swagger-ui-bundle package: the docs work offline."""
    return send_from_directory(swagger_ui_path, filename, max_age=86400)


@blp.record_once
def _register_swagger_ui_static(state) -> None:
    # The docs page (flask-smorest, OPENAPI_SWAGGER_UI_URL) loads its assets from this
    # app-level route, outside the /utils prefix and outside the OpenAPI document.
    state.app.add_url_rule(SWAGGER_UI_STATIC, "swagger_ui_static", _serve_swagger_ui)
