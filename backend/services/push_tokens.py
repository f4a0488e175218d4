"""An owner's Expo push tokens: registered by their phone after login, forgotten on logout.

A token names one device: registering it again is harmless (no second row), and a token
registered to another user moves to the caller (the phone now belongs to their session).
Two registrations racing on the unique constraint both succeed.
"""

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from backend.errors import not_found
from backend.extensions import db
from backend.models import PushToken, User
from backend.models.types import utcnow
from backend.rules.push import is_push_token

ATTEMPTS = 3


def register(user: User, token: str) -> PushToken:
    """The caller's row for `token` (committed): created, kept or moved from another user."""
    user_id = user.id
    for _ in range(ATTEMPTS):
        row = db.session.execute(select(PushToken).where(PushToken.token == token)).scalar_one_or_none()
        if row is None:
            row = PushToken(user_id=user_id, token=token, created_at=utcnow())
            db.session.add(row)
        elif row.user_id != user_id:
            row.user_id, row.created_at = user_id, utcnow()
        else:
            return row
        try:
            db.session.commit()
            return row
        except IntegrityError:
            # Registered by a concurrent request meanwhile: read that row and decide again.
            db.session.rollback()
    row = db.session.execute(select(PushToken).where(PushToken.token == token)).scalar_one_or_none()
    if row is None or row.user_id != user_id:
        raise RuntimeError("push token registration kept racing")
    return row


def unregister(user: User, token: str) -> None:
    """Forgets one of the caller's tokens; 404 when it is not theirs (or not a token)."""
    if not is_push_token(token):
        raise not_found("Push token")
    mine = delete(PushToken).where(PushToken.token == token, PushToken.user_id == user.id)
    deleted = db.session.execute(mine.returning(PushToken.id)).first()
    if deleted is None:
        db.session.rollback()
        raise not_found("Push token")
    db.session.commit()
