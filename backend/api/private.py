"""Local-only helpers: registered by the app factory only when ENVIRONMENT=local, so every
path here is a 404 anywhere else (as the FastAPI template's /private routes)."""

from backend.api.parsing import Blueprint
from backend.schemas.user import PrivateUserCreateSchema, UserPublicSchema
from backend.services import users as user_service

URL_PREFIX = "/private"
blp = Blueprint("private", __name__, description="Local development helpers (ENVIRONMENT=local only).")


@blp.route("/users/", methods=["POST"])
@blp.arguments(PrivateUserCreateSchema)
@blp.response(201, UserPublicSchema)
def create_user(data):
    """Create a user without being logged in (local development only). Without `password`
    the user is invited by email to choose one."""
    return user_service.create_user(data)
