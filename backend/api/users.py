"""User accounts."""

import uuid

from backend.api.access import authenticated, me
from backend.api.parsing import Blueprint, body_limit
from backend.errors import Forbidden
from backend.schemas.common import MessageSchema, PageArgsSchema, upload_schema
from backend.schemas.push import PushTokenCreateSchema, PushTokenPublicSchema
from backend.schemas.user import (
    UpdatePasswordSchema,
    UserCreateSchema,
    UserPublicSchema,
    UserRegisterSchema,
    UsersPublicSchema,
    UserUpdateMeSchema,
    UserUpdateSchema,
)
from backend.services import media, push_tokens
from backend.services import users as user_service

URL_PREFIX = "/users"
blp = Blueprint("users", __name__, description="User accounts.")
# The template's wording for PATCH; GET and DELETE say "User not found".
UNKNOWN_USER_ON_UPDATE = "The user with this id does not exist in the system"


@blp.route("/", methods=["GET"])
@authenticated(superuser=True)
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, UsersPublicSchema)
def list_users(args):
    """List users (superuser only)."""
    users, count = user_service.list_users(args["skip"], args["limit"])
    return {"data": users, "count": count}


@blp.route("/", methods=["POST"])
@authenticated(superuser=True)
@blp.arguments(UserCreateSchema)
@blp.response(201, UserPublicSchema)
def create_user(data):
    """Create a user (superuser only)."""
    return user_service.create_user(data)


@blp.route("/me", methods=["GET"])
@authenticated
@blp.response(200, UserPublicSchema)
def read_user_me():
    """Get the current user."""
    return me()


@blp.route("/me", methods=["PATCH"])
@authenticated
@blp.arguments(UserUpdateMeSchema)
@blp.response(200, UserPublicSchema)
def update_user_me(data):
    """Update the current user's email and profile."""
    return user_service.update_user(me(), data, acting_user=me())


AvatarUploadSchema = upload_schema("avatar", media.UPLOAD_DESCRIPTION)


@blp.route("/me/avatar", methods=["POST"])
@body_limit(media.UPLOAD_BODY_LIMIT)
@authenticated
@blp.arguments(AvatarUploadSchema, location="files")
@blp.response(200, UserPublicSchema)
def upload_avatar_me(files):
    """Upload the current user's avatar (multipart field `avatar`); sets `avatar_url`.

    JPEG, PNG or WebP up to 5 MB; stored re-encoded, without metadata, at most 1024 px a side.
    The previous avatar is deleted."""
    return user_service.set_avatar(me(), files["avatar"])


@blp.route("/me/password", methods=["PATCH"])
@authenticated
@blp.arguments(UpdatePasswordSchema)
@blp.response(200, MessageSchema)
def update_password_me(data):
    """Change the current user's password."""
    user_service.change_password(me(), data["current_password"], data["new_password"])
    return {"message": "Password updated successfully"}


@blp.route("/me/push-tokens", methods=["POST"])
@authenticated
@blp.arguments(PushTokenCreateSchema)
@blp.response(201, PushTokenPublicSchema)
def register_push_token(data):
    """Register this phone's Expo push token for the current user (idempotent).

    A token registered to another user moves to the caller."""
    return push_tokens.register(me(), data["token"])


@blp.route("/me/push-tokens/<token>", methods=["DELETE"])
@authenticated
@blp.response(204)
def delete_push_token(token: str):
    """Forget one of the current user's push tokens (the phone logged out)."""
    push_tokens.unregister(me(), token)


@blp.route("/me", methods=["DELETE"])
@authenticated
@blp.response(200, MessageSchema)
def delete_user_me():
    """Delete the current user and everything it owns."""
    user_service.delete_user(me(), acting_user=me())
    return {"message": "User deleted successfully"}


@blp.route("/signup", methods=["POST"])
@blp.arguments(UserRegisterSchema)
@blp.response(201, UserPublicSchema)
def register_user(data):
    """Create an account without being logged in."""
    return user_service.create_user(data)


@blp.route("/<uuid:user_id>", methods=["GET"])
@authenticated
@blp.response(200, UserPublicSchema)
def read_user(user_id: uuid.UUID):
    """Get a user by id (yourself, or anyone as a superuser)."""
    current = me()
    if user_id == current.id:
        return current
    if not current.is_superuser:
        raise Forbidden("The user doesn't have enough privileges")
    return user_service.get_user_or_404(user_id)


@blp.route("/<uuid:user_id>", methods=["PATCH"])
@authenticated(superuser=True)
@blp.arguments(UserUpdateSchema)
@blp.response(200, UserPublicSchema)
def update_user(data, user_id: uuid.UUID):
    """Update a user (superuser only)."""
    user = user_service.get_user_or_404(user_id, detail=UNKNOWN_USER_ON_UPDATE)
    return user_service.update_user(user, data, acting_user=me())


@blp.route("/<uuid:user_id>", methods=["DELETE"])
@authenticated(superuser=True)
@blp.response(200, MessageSchema)
def delete_user(user_id: uuid.UUID):
    """Delete a user and everything it owns (superuser only)."""
    user_service.delete_user(user_service.get_user_or_404(user_id), acting_user=me())
    return {"message": "User deleted successfully"}
