"""The one way owner lists are read: `{data, count}` pages over a model."""

from collections.abc import Sequence

from sqlalchemy import func, select

from backend.extensions import db


def page(model, conditions: Sequence, order_by: Sequence, skip: int, limit: int) -> tuple[list, int]:
    """Rows of `model` matching all `conditions`, ordered, `skip`/`limit` applied, and the
    total count of matching rows: two statements, whatever the page size."""
    count = db.session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0
    items = db.session.scalars(
        select(model).where(*conditions).order_by(*order_by).offset(skip).limit(limit)
    ).all()
    return list(items), count
