"""Access tokens, the current user, and workspace ownership checks."""

import uuid

from flask_jwt_extended import JWTManager, create_access_token, current_user, verify_jwt_in_request

from backend.errors import BadRequest, Forbidden, error_response
from backend.extensions import db
from backend.models import User

CREDENTIALS_ERROR = "Could not validate credentials"


def register_jwt_callbacks(jwt: JWTManager) -> None:
    @jwt.user_lookup_loader
    def load_user(_header, payload):
        try:
            return db.session.get(User, uuid.UUID(payload["sub"]))
        except (ValueError, KeyError, TypeError):
            return None

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
    return create_access_token(identity=str(user.id))


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
