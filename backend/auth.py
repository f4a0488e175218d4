"""Access tokens, the current user, and workspace ownership checks.

An access token names its user and the user's `token_version` when it was issued
(claim `ver`). Every password change or reset raises the version, so the lookup
that loads the user for a request (one query, needed anyway) refuses older tokens.
The request that changed its own password gets a fresh token in the
`X-Access-Token` response header.
"""

import uuid

from flask import Flask, g
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    current_user,
    get_jwt,
    verify_jwt_in_request,
)

from backend.errors import BadRequest, Forbidden, error_response
from backend.extensions import db
from backend.models import User

CREDENTIALS_ERROR = "Could not validate credentials"
ACCESS_TOKEN_TYPE = "access"
FRESH_TOKEN_HEADER = "X-Access-Token"


def register_jwt_callbacks(jwt: JWTManager) -> None:
    @jwt.user_lookup_loader
    def load_user(_header, payload):
        version = payload.get("ver")
        # Only access tokens open a session: a password-reset token (same key) is not one.
        if payload.get("type") != ACCESS_TOKEN_TYPE or type(version) is not int or "exp" not in payload:
            raise Forbidden(CREDENTIALS_ERROR)
        try:
            user = db.session.get(User, uuid.UUID(payload["sub"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Forbidden(CREDENTIALS_ERROR) from None
        if user is not None and user.token_version != version:
            raise Forbidden(CREDENTIALS_ERROR)  # issued before a password change or reset
        return user

    @jwt.unauthorized_loader
    def missing_token(_reason):
        return error_response(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})

    @jwt.invalid_token_loader
    def invalid_token(_reason):
        return error_response(403, CREDENTIALS_ERROR)

    @jwt.expired_token_loader
    def expired_token(_header, _payload):
        return error_response(403, CREDENTIALS_ERROR)

    @jwt.user_lookup_error_loader
    def unknown_user(_header, _payload):
        return error_response(404, "User not found")


def issue_access_token(user: User) -> str:
    return create_access_token(identity=str(user.id), additional_claims={"ver": user.token_version})


def tokens_revoked(user: User) -> None:
    """Notes that `user`'s earlier access tokens stopped working in this request, so a
    request made with one of them can be answered with a fresh token."""
    g.setdefault("revoked_token_versions", {})[str(user.id)] = user.token_version


def register_fresh_token_header(app: Flask) -> None:
    @app.after_request
    def _fresh_token_after_password_change(response):
        revoked = g.get("revoked_token_versions")
        if not revoked or not 200 <= response.status_code < 300:
            return response
        try:
            claims = get_jwt()
        except RuntimeError:
            return response  # not an authenticated request
        # Keyed by the token's subject: no attribute of the (committed, expired) user is read.
        subject = claims.get("sub")
        if subject in revoked and claims.get("ver") != revoked[subject]:
            token = create_access_token(identity=subject, additional_claims={"ver": revoked[subject]})
            response.headers[FRESH_TOKEN_HEADER] = token
            response.headers.add("Access-Control-Expose-Headers", FRESH_TOKEN_HEADER)
            response.headers["Cache-Control"] = "no-store"
        return response


def require_user() -> User:
    """The authenticated, active user of this request (raises the template's errors)."""
    verify_jwt_in_request()
    user: User = current_user
    if not user.is_active:
        raise BadRequest("Inactive user")
    return user


def require_superuser() -> User:
    user = require_user()
    if not user.is_superuser:
        raise Forbidden("The user doesn't have enough privileges")
    return user


def check_workspace_access(user: User, workspace) -> None:
    """Owners see their own workspace; superusers see every workspace."""
    if not user.is_superuser and workspace.owner_id != user.id:
        raise Forbidden("Not your workspace")
