"""User accounts: sign-up, authentication, profile and password changes, recovery.

- An address is looked up and stored normalised (backend/rules/identity.py): one account per
  address however it is typed.
- Every password change (own, by a superuser, by reset link) raises the account's
  token_version, which ends its earlier access tokens and reset links (backend/auth.py).
- A superuser cannot demote, deactivate or delete its own account, and no change leaves
  the system without an active superuser: such changes lock the active superusers' rows
  first, so two superusers demoting each other at once cannot both succeed.
"""

import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from backend.auth import tokens_revoked
from backend.errors import BadRequest, Conflict, Forbidden, NotFound
from backend.extensions import db
from backend.models import User, Workspace
from backend.rules.identity import normalize_email
from backend.rules.text import is_storable_text
from backend.security import (
    create_password_reset_token,
    hash_password,
    read_password_reset_token,
    reset_token_fits,
    verify_password,
)
from backend.services import email as email_service
from backend.services import media
from backend.services.pagination import page

DUPLICATE_SIGNUP = "The user with this email already exists in the system"
EMAIL_TAKEN = "User with this email already exists"
SELF_DEMOTION = "Super users are not allowed to demote or deactivate themselves"
SELF_DELETION = "Super users are not allowed to delete themselves"
LAST_SUPERUSER = "The last active superuser cannot be demoted, deactivated or deleted"

_dummy_hash: str | None = None


def get_user(user_id: uuid.UUID) -> User | None:
    return db.session.get(User, user_id)


def get_user_or_404(user_id: uuid.UUID, detail: str = "User not found") -> User:
    user = get_user(user_id)
    if user is None:
        raise NotFound(detail)
    return user


def get_by_email(email: str) -> User | None:
    if not email or not is_storable_text(email):  # e.g. the recovery route's path
        return None
    return db.session.execute(select(User).where(User.email == normalize_email(email))).scalar_one_or_none()


def authenticate(email: str, password: str) -> User | None:
    """The user with these credentials, or None; inactive users are returned (the caller says why)."""
    global _dummy_hash
    user = get_by_email(email)
    if user is None:
        # Hash anyway, so an unknown email takes as long to refuse as a wrong password.
        _dummy_hash = _dummy_hash or hash_password("not-a-real-password")
        verify_password(password, _dummy_hash)
        return None
    if not verify_password(password, user.hashed_password):
        return None
    return user


def list_users(skip: int, limit: int) -> tuple[list[User], int]:
    return page(User, [], [User.created_at, User.id], skip, limit)


def create_user(data: dict) -> User:
    """Creates a user from validated fields (`password` in clear); duplicates are a 400.

    Without a password (a superuser inviting someone) the account gets a random one nobody
    knows, and an email with a link to choose a password: the password-reset link, so it
    works once and expires like one."""
    data = dict(data)
    if get_by_email(data["email"]) is not None:
        raise BadRequest(DUPLICATE_SIGNUP)
    password = data.pop("password", None)
    invited = password is None
    user = User(hashed_password=hash_password(password or secrets.token_urlsafe(32)), social_links={})
    _apply(user, data)
    db.session.add(user)
    _commit(BadRequest(DUPLICATE_SIGNUP))
    if invited:
        token = create_password_reset_token(user)
        email_service.send_new_account_email(user.email, token, user.full_name)
    return user


def update_user(user: User, data: dict, acting_user: User) -> User:
    """Applies validated fields as `acting_user`; another account's email is a 409."""
    data = dict(data)
    if data.get("is_superuser") is False or data.get("is_active") is False:
        if user.id == acting_user.id and user.is_superuser:
            raise Forbidden(SELF_DEMOTION)
        _keep_an_active_superuser(user)
    new_email = data.get("email")
    if new_email is not None and normalize_email(new_email) != user.email:
        existing = get_by_email(new_email)
        if existing is not None and existing.id != user.id:
            raise Conflict(EMAIL_TAKEN)
    if "password" in data:
        password = data.pop("password")
        if password is not None:
            _set_password(user, password)
    _apply(user, data)
    _commit(Conflict(EMAIL_TAKEN))
    return user


def change_password(user: User, current_password: str, new_password: str) -> None:
    if not verify_password(current_password, user.hashed_password):
        raise BadRequest("Incorrect password")
    if current_password == new_password:
        raise BadRequest("New password cannot be the same as the current one")
    _set_password(user, new_password)
    db.session.commit()


def _set_password(user: User, password: str) -> None:
    """Sets the password and ends every access token and reset link issued before."""
    user.hashed_password = hash_password(password)
    user.token_version = (user.token_version or 0) + 1
    tokens_revoked(user)


def _keep_an_active_superuser(user: User) -> None:
    """Refuses (409) when `user` is the last active superuser; otherwise holds the active
    superusers' rows locked until commit, so concurrent changes are checked one by one."""
    if not (user.is_superuser and user.is_active):
        return
    active = list(
        db.session.execute(
            select(User.id)
            .where(User.is_superuser.is_(True), User.is_active.is_(True))
            .order_by(User.id)
            .with_for_update()
        ).scalars()
    )
    if user.id in active and len(active) == 1:
        db.session.rollback()
        raise Conflict(LAST_SUPERUSER)


def delete_user(user: User, acting_user: User) -> None:
    """Deletes the account; the database cascades to its workspace and everything in it.
    Its avatar and its workspace's profile image are deleted from storage afterwards."""
    if user.id == acting_user.id and user.is_superuser:
        raise Forbidden(SELF_DELETION)
    _keep_an_active_superuser(user)
    workspace_images = db.session.execute(
        select(Workspace.id, Workspace.profile_image_url).where(Workspace.owner_id == user.id)
    ).all()
    images = [(user.avatar_url, "users", user.id)]
    images += [(url, "workspaces", workspace_id) for workspace_id, url in workspace_images]
    db.session.delete(user)
    db.session.commit()
    # Rows removed by ON DELETE CASCADE may still sit in the identity map.
    db.session.expire_all()
    for url, kind, owner_id in images:
        media.delete_url(url, kind, owner_id)


def set_avatar(user: User, upload) -> User:
    """Stores an uploaded image as the user's avatar; the previous one is deleted."""
    return media.replace_image(user, "avatar_url", "users", upload, "avatar")


def request_password_recovery(email: str) -> None:
    """Emails a reset link when the account exists; says nothing either way."""
    user = get_by_email(email)
    if user is None:
        return
    token = create_password_reset_token(user)
    email_service.send_reset_password_email(user.email, token, user.full_name)


def reset_password(token: str, new_password: str) -> None:
    """Sets the password named by a reset link; the link (and every other one) then stops working."""
    claims = read_password_reset_token(token)
    if claims is None:
        raise BadRequest("Invalid token")
    # Locked and read afresh: of two requests with one link, the second sees the first's change.
    user = db.session.execute(
        select(User)
        .where(User.id == claims["sub"])
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if user is None or not reset_token_fits(claims, user):
        # The same answer for a bad, used or superseded link and a vanished account.
        db.session.rollback()
        raise BadRequest("Invalid token")
    if not user.is_active:
        db.session.rollback()
        raise BadRequest("Inactive user")
    _set_password(user, new_password)
    db.session.commit()


def ensure_superuser(email: str, password: str) -> tuple[User, bool]:
    """The account with this email, created as a superuser when missing; returns (user,
    created). An existing account is returned as it is: the caller says what it is."""
    user = get_by_email(email)
    if user is not None:
        return user, False
    user = User(
        email=email,
        hashed_password=hash_password(password),
        is_superuser=True,
        is_active=True,
        social_links={},
    )
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        # Two release steps raced: the other one created it.
        db.session.rollback()
        winner = db.session.execute(select(User).where(User.email == normalize_email(email))).scalar_one()
        return winner, False
    return user, True


def _apply(user: User, data: dict) -> None:
    if "social_links" in data and data["social_links"] is None:
        data["social_links"] = {}
    for field, value in data.items():
        setattr(user, field, value)


def _commit(on_conflict: Exception) -> None:
    """Commits; a concurrent request that took the same email turns into `on_conflict`."""
    try:
        db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        raise on_conflict from error
