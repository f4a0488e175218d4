"""Access tokens and password recovery."""

from flask import current_app

from backend.api.access import authenticated, me
from backend.api.parsing import Blueprint
from backend.auth import issue_access_token
from backend.errors import BadRequest
from backend.extensions import limiter
from backend.schemas.common import MessageSchema
from backend.schemas.user import LoginFormSchema, NewPasswordSchema, TokenSchema, UserPublicSchema
from backend.services import users as user_service

URL_PREFIX = ""
blp = Blueprint("login", __name__, description="Access tokens and password recovery.")
RECOVERY_MESSAGE = "If that email is registered, we sent a password recovery link"


def _login_rate_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


@blp.route("/login/access-token", methods=["POST"])
@limiter.limit(_login_rate_limit)
@blp.arguments(LoginFormSchema, location="form")
@blp.response(200, TokenSchema)
def login_access_token(form):
    """Log in with the OAuth2 password form (username = email); returns a bearer token."""
    user = user_service.authenticate(form["username"], form["password"])
    if user is None:
        raise BadRequest("Incorrect email or password")
    if not user.is_active:
        raise BadRequest("Inactive user")
    return {"access_token": issue_access_token(user), "token_type": "bearer"}


@blp.route("/login/test-token", methods=["POST"])
@authenticated
@blp.response(200, UserPublicSchema)
def test_token():
    """Check an access token; returns its user."""
    return me()


@blp.route("/password-recovery/<email>", methods=["POST"])
@limiter.limit(_login_rate_limit)
@blp.response(200, MessageSchema)
def recover_password(email: str):
    """Email a password reset link when the account exists (same answer either way)."""
    user_service.request_password_recovery(email)
    return {"message": RECOVERY_MESSAGE}


@blp.route("/reset-password/", methods=["POST"])
@limiter.limit(_login_rate_limit)
@blp.arguments(NewPasswordSchema)
@blp.response(200, MessageSchema)
def reset_password(data):
    """Set a new password with the token from the recovery email."""
    user_service.reset_password(data["token"], data["new_password"])
    return {"message": "Password updated successfully"}
