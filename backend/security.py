"""Password hashing (argon2) and signed, expiring, single-use tokens for password resets."""

import hashlib
import hmac
import uuid
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


RESET_TOKEN_TYPE = "password-reset"


def _account_state(user) -> str:
    """A digest of what a reset link must not outlive: the account's password, address and
    token version (raised by every password change and reset, the link's own use included)."""
    material = f"{user.id}\0{user.email}\0{user.hashed_password}\0{user.token_version}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def create_password_reset_token(user) -> str:
    now = datetime.now(UTC)
    expires = now + current_app.config["EMAIL_RESET_TOKEN_EXPIRE"]
    payload = {
        "type": RESET_TOKEN_TYPE,
        "sub": str(user.id),
        "state": _account_state(user),
        "iat": now,
        "nbf": now,
        "exp": expires,
    }
    return pyjwt.encode(payload, current_app.config["SECRET_KEY"], algorithm="HS256")


def read_password_reset_token(token: str) -> dict | None:
    """The claims of a genuine, unexpired reset token (never an access token), or None.
    Whether it still fits the account is `reset_token_fits`."""
    try:
        claims = pyjwt.decode(
            token,
            current_app.config["SECRET_KEY"],
            algorithms=["HS256"],
            options={"require": ["exp", "sub", "type", "state"]},
        )
        claims["sub"] = uuid.UUID(claims["sub"])
    except (pyjwt.PyJWTError, ValueError, TypeError, AttributeError):
        return None
    if claims["type"] != RESET_TOKEN_TYPE or not isinstance(claims["state"], str):
        return None
    return claims


def reset_token_fits(claims: dict, user) -> bool:
    """Whether the account is still as it was when the token was issued: a link stops
    working once it (or any other link, or a password change) has set a password."""
    return hmac.compare_digest(claims["state"], _account_state(user))
