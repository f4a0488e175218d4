"""Versions of rows read from PostgreSQL's transaction ids (the `xmin` system column), for
results kept until the rows they were computed from change (services.search_counts,
agent.context_cache).

Every write of a row gives it the writing transaction's id, so a row's `xmin` moves with
each write; over a set of rows, the number of rows and the sum of their `xmin`s move with
every insert, delete and update (only writes whose ids cancel out exactly would leave the
sum as it was). PostgreSQL only.
"""

from sqlalchemy import BigInteger, ColumnElement, Text, cast, func, literal_column, select


def row_xmin(model) -> ColumnElement:
    """The `xmin` of `model`'s row, as text."""
    return cast(literal_column(f'"{model.__tablename__}".xmin'), Text)


def rows_version(model, *where) -> ColumnElement:
    """`<number>:<sum of xmin>` of `model`'s rows matching `where`, as a scalar subquery
    (correlated to the enclosing statement's tables that `where` names)."""
    xmin = cast(row_xmin(model), BigInteger)
    return (
        select(func.concat(func.count(), ":", func.coalesce(func.sum(xmin), 0)))
        .select_from(model)
        .where(*where)
        .scalar_subquery()
    )
