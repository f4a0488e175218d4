"""Test data factories: they write through the models and return them."""

import itertools

from backend.auth import issue_access_token
from backend.extensions import db
from backend.models import User
from backend.security import hash_password

_seq = itertools.count(1)
DEFAULT_PASSWORD = "correct-horse-battery"


def make_user(email: str | None = None, password: str = DEFAULT_PASSWORD, **fields) -> User:
    user = User(
        email=email or f"user{next(_seq)}@example.com",
        hashed_password=hash_password(password),
        is_active=fields.pop("is_active", True),
        is_superuser=fields.pop("is_superuser", False),
        social_links=fields.pop("social_links", {}),
        **fields,
    )
    db.session.add(user)
    db.session.commit()
    return user


def auth_headers(user: User) -> dict:
    return {"Authorization": f"Bearer {issue_access_token(user)}"}
