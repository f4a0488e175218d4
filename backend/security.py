"""Password hashing (argon2) and signed, expiring tokens for password resets."""

from datetime import UTC, datetime
from functools import lru_cache

import jwt as pyjwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, has_app_context


@lru_cache(maxsize=4)
def _hasher_with(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


def _hasher() -> PasswordHasher:
    """argon2 at the cost the app's config asks for (argon2-cffi's defaults outside an app).

    A hash records its own parameters, so changing the cost never breaks existing passwords."""
    if not has_app_context():
        return PasswordHasher()
    config = current_app.config
    return _hasher_with(
        config["PASSWORD_HASH_TIME_COST"],
        config["PASSWORD_HASH_MEMORY_COST"],
        config["PASSWORD_HASH_PARALLELISM"],
    )


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password: str, hashed: str) -> bool:
    try:
        return _hasher().verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def create_password_reset_token(email: str) -> str:
    now = datetime.now(UTC)
    expires = now + current_app.config["EMAIL_RESET_TOKEN_EXPIRE"]
    payload = {"sub": email, "nbf": now, "exp": expires, "purpose": "password-reset"}
    return pyjwt.encode(payload, current_app.config["SECRET_KEY"], algorithm="HS256")


def verify_password_reset_token(token: str) -> str | None:
    """The email the token was issued for, or None when it is invalid or expired."""
    try:
        payload = pyjwt.decode(token, current_app.config["SECRET_KEY"], algorithms=["HS256"])
    except pyjwt.PyJWTError:
        return None
    if payload.get("purpose") != "password-reset":
        return None
    return payload.get("sub")
