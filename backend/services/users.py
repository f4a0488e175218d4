"""User accounts: sign-up, authentication, profile and password changes, recovery."""

import hashlib
import uuid

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from backend.errors import BadRequest, Conflict, Forbidden, NotFound
from backend.extensions import db, redis_client
from backend.models import User
from backend.security import (
    create_password_reset_token,
    hash_password,
    verify_password,
    verify_password_reset_token,
)
from backend.services import email as email_service
from backend.services.pagination import page

DUPLICATE_SIGNUP = "The user with this email already exists in the system"
EMAIL_TAKEN = "User with this email already exists"

_dummy_hash: str | None = None


def get_user(user_id: uuid.UUID) -> User | None:
    return db.session.get(User, user_id)


def get_user_or_404(user_id: uuid.UUID, detail: str = "User not found") -> User:
    user = get_user(user_id)
    if user is None:
        raise NotFound(detail)
    return user



def get_by_email(email: str) -> User | None:
    if not email or "\x00" in email:
        return None
    return db.session.execute(select(User).where(User.email == email)).scalar_one_or_none()


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
    """Creates a user from validated fields (`password` in clear); duplicates are a 400."""
    data = dict(data)
    if get_by_email(data["email"]) is not None:
        raise BadRequest(DUPLICATE_SIGNUP)
    user = User(hashed_password=hash_password(data.pop("password")), social_links={})
    _apply(user, data)
    db.session.add(user)
    _commit(BadRequest(DUPLICATE_SIGNUP))
    return user


def update_user(user: User, data: dict) -> User:
    """Applies validated fields; another account's email is a 409."""
    data = dict(data)
    new_email = data.get("email")
    if new_email is not None and new_email != user.email:
        existing = get_by_email(new_email)
        if existing is not None and existing.id != user.id:
            raise Conflict(EMAIL_TAKEN)
    if "password" in data:
        password = data.pop("password")
        if password is not None:
            user.hashed_password = hash_password(password)
    _apply(user, data)
    _commit(Conflict(EMAIL_TAKEN))
    return user


def change_password(user: User, current_password: str, new_password: str) -> None:
    if not verify_password(current_password, user.hashed_password):
        raise BadRequest("Incorrect password")
    if current_password == new_password:
        raise BadRequest("New password cannot be the same as the current one")
    user.hashed_password = hash_password(new_password)
    db.session.commit()


def delete_user(user: User, acting_user: User) -> None:
    """Deletes the account; the database cascades to its workspace and everything in it."""
    if user.id == acting_user.id and user.is_superuser:
        raise Forbidden("Super users are not allowed to delete themselves")
    db.session.delete(user)
    db.session.commit()
    # Rows removed by ON DELETE CASCADE may still sit in the identity map.
    db.session.expire_all()


def request_password_recovery(email: str) -> None:
    """Emails a reset link when the account exists; says nothing either way."""
    user = get_by_email(email)
    if user is None:
        return
    token = create_password_reset_token(user.email)
    email_service.send_in_background(
        email_service.send_reset_password_email, user.email, token, user.full_name
    )


def reset_password(token: str, new_password: str) -> None:
    email = verify_password_reset_token(token)
    user = get_by_email(email) if email else None
    if user is None:
        # The same answer for a bad token and a vanished account.
        raise BadRequest("Invalid token")
    if not user.is_active:
        raise BadRequest("Inactive user")
    _use_reset_token_once(token)
    user.hashed_password = hash_password(new_password)
    db.session.commit()


def _use_reset_token_once(token: str) -> None:
    """A reset link works once: a copy found later in a mailbox cannot reset again."""
    key = "password-reset-used:" + hashlib.sha256(token.encode()).hexdigest()
    ttl = int(current_app.config["EMAIL_RESET_TOKEN_EXPIRE"].total_seconds())
    if not redis_client().set(key, "1", nx=True, ex=max(ttl, 1)):
        raise BadRequest("Invalid token")


def ensure_superuser(email: str, password: str) -> tuple[User, bool]:
    """The superuser with this email, created when missing; returns (user, created)."""
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
        return get_by_email(email), False
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
