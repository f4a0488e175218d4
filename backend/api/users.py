"""User accounts."""

import uuid
from functools import wraps

from flask_smorest import Blueprint

from backend.auth import require_superuser, require_user
from backend.errors import Forbidden
from backend.models import User
from backend.schemas.common import MessageSchema, PageArgsSchema
from backend.schemas.user import (
    UpdatePasswordSchema,
    UserCreateSchema,
    UserPublicSchema,
    UserRegisterSchema,
    UsersPublicSchema,
    UserUpdateMeSchema,
    UserUpdateSchema,
)
from backend.services import users as user_service

URL_PREFIX = "/users"
blp = Blueprint("users", __name__, description="User accounts.")
SECURED = [{"bearerAuth": []}]


def authenticated(superuser: bool = False):
    """Checks the token before the body is parsed (401/403 win over 422, as in the template)
    and passes the user as `current`."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            current = require_superuser() if superuser else require_user()
            return view(*args, current=current, **kwargs)

        return wrapper

    return decorator


@blp.route("/", methods=["GET"])
@blp.doc(security=SECURED)
@authenticated(superuser=True)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, UsersPublicSchema)
def list_users(args, current: User):
    """List users (superuser only)."""
    users, count = user_service.list_users(args["skip"], args["limit"])
    return {"data": users, "count": count}


@blp.route("/", methods=["POST"])
@blp.doc(security=SECURED)
@authenticated(superuser=True)
@blp.arguments(UserCreateSchema)
@blp.response(201, UserPublicSchema)
def create_user(data, current: User):
    """Create a user (superuser only)."""
    return user_service.create_user(data)


@blp.route("/me", methods=["GET"])
@blp.doc(security=SECURED)
@authenticated()
@blp.response(200, UserPublicSchema)
def read_user_me(current: User):
    """Get the current user."""
    return current


@blp.route("/me", methods=["PATCH"])
@blp.doc(security=SECURED)
@authenticated()
@blp.arguments(UserUpdateMeSchema)
@blp.response(200, UserPublicSchema)
def update_user_me(data, current: User):
    """Update the current user's email and profile."""
    return user_service.update_user(current, data)


@blp.route("/me/password", methods=["PATCH"])
@blp.doc(security=SECURED)
@authenticated()
@blp.arguments(UpdatePasswordSchema)
@blp.response(200, MessageSchema)
def update_password_me(data, current: User):
    """Change the current user's password."""
    user_service.change_password(current, data["current_password"], data["new_password"])
    return {"message": "Password updated successfully"}


@blp.route("/me", methods=["DELETE"])
@blp.doc(security=SECURED)
@authenticated()
@blp.response(200, MessageSchema)
def delete_user_me(current: User):
    """Delete the current user and everything it owns."""
    user_service.delete_user(current, acting_user=current)
    return {"message": "User deleted successfully"}


@blp.route("/signup", methods=["POST"])
@blp.arguments(UserRegisterSchema)
@blp.response(201, UserPublicSchema)
def register_user(data):
    """Create an account without being logged in."""
    return user_service.create_user(data)


@blp.route("/<uuid:user_id>", methods=["GET"])
@blp.doc(security=SECURED)
@authenticated()
@blp.response(200, UserPublicSchema)
def read_user(user_id: uuid.UUID, current: User):
    """Get a user by id (yourself, or anyone as a superuser)."""
    if user_id == current.id:
        return current
    if not current.is_superuser:
        raise Forbidden("The user doesn't have enough privileges")
    return user_service.get_user_or_404(user_id)


@blp.route("/<uuid:user_id>", methods=["PATCH"])
@blp.doc(security=SECURED)
@authenticated(superuser=True)
@blp.arguments(UserUpdateSchema)
@blp.response(200, UserPublicSchema)
def update_user(data, user_id: uuid.UUID, current: User):
    """Update a user (superuser only)."""
    return user_service.update_user(user_service.get_user_or_404(user_id), data)


@blp.route("/<uuid:user_id>", methods=["DELETE"])
@blp.doc(security=SECURED)
@authenticated(superuser=True)
@blp.response(200, MessageSchema)
def delete_user(user_id: uuid.UUID, current: User):
    """Delete a user and everything it owns (superuser only)."""
    user_service.delete_user(user_service.get_user_or_404(user_id), acting_user=current)
    return {"message": "User deleted successfully"}
