"""The plain writes of owner resources: a new row, changed fields, a deleted row, each
committed at once (the services with rules of their own write their rows themselves)."""

from backend.extensions import db


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
