"""The plain writes of owner resources: a new row, changed fields, a deleted row, each
committed at once (the services with rules of their own write their rows themselves)."""

from backend.extensions import db


def commit_keeping_state() -> None:
    """Commits without expiring what the session holds: the caller answers from the rows it
    just wrote instead of reading them back (each read-back would take a connection again
    and keep it until the end of the request)."""
    session = db.session()
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True


def save_new(row):
    db.session.add(row)
    db.session.commit()
    return row


def update_fields(row, data: dict):
    for key, value in data.items():
        setattr(row, key, value)
    db.session.commit()
    return row


def delete_row(row) -> None:
    db.session.delete(row)
    db.session.commit()
