"""setup-wizard profile fields, free-text workspace type and tone

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 04:00:00.000000

`user` gains the setup wizard's profile: name, about, avatar_url, profile_type (<= 50
characters) and faqs. Every new column is nullable, so existing rows need no value.

`workspaces.type` and `workspaces.tone` widen from 20 to 50 characters: they are free
text now (the five known tones keep their tuned instructions). On SQLite the declared
length is only a name (both are TEXT affinity, nothing on disk changes), so the table's
declaration is edited in place rather than rebuilt: rebuilding "workspaces" would drop
the old table, and with foreign keys on that deletes every service, connector and
conversation through ON DELETE CASCADE.

Downgrade drops the profile columns and narrows type/tone back to 20 characters; it stops,
changing nothing, when a workspace holds a longer value (a person decides what it becomes).
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PROFILE_COLUMNS = (
    ("name", sa.String(length=255)),
    ("about", sa.Text()),
    ("avatar_url", sa.String(length=2048)),
    ("profile_type", sa.String(length=50)),
    ("faqs", sa.Text()),
)
FREE_TEXT_COLUMNS = ("type", "tone")


def _declare_lengths_on_sqlite(old: int, new: int) -> None:
    """Rewrites VARCHAR(old) to VARCHAR(new) for type/tone in the stored CREATE TABLE of
    "workspaces" (SQLite's documented writable_schema procedure for changes that leave
    the stored data as it is), then bumps schema_version so open connections reload it."""
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'workspaces'"
    ).scalar_one()
    for column in FREE_TEXT_COLUMNS:
        for name in (column, f'"{column}"'):
            sql = sql.replace(f"{name} VARCHAR({old})", f"{name} VARCHAR({new})")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.execute(
        sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'workspaces'"),
        {"sql": sql},
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def _set_lengths(old: int, new: int) -> None:
    if op.get_bind().dialect.name == "sqlite":
        _declare_lengths_on_sqlite(old, new)
        return
    for column in FREE_TEXT_COLUMNS:
        op.alter_column(
            "workspaces",
            column,
            existing_type=sa.String(length=old),
            type_=sa.String(length=new),
            existing_nullable=False,
        )


def upgrade():
    # Plain ALTER TABLE ... ADD COLUMN on both databases (no SQLite table rebuild).
    for name, type_ in PROFILE_COLUMNS:
        op.add_column("user", sa.Column(name, type_, nullable=True))
    _set_lengths(20, 50)


def downgrade():
    workspaces = sa.table(
        "workspaces", sa.column("handle", sa.String()), sa.column("type"), sa.column("tone")
    )
    too_long = (
        op.get_bind()
        .execute(
            sa.select(workspaces.c.handle)
            .where(sa.or_(sa.func.length(workspaces.c.type) > 20, sa.func.length(workspaces.c.tone) > 20))
            .order_by(workspaces.c.handle)
        )
        .scalars()
        .all()
    )
    if too_long:
        raise RuntimeError(
            "Cannot narrow workspaces.type/tone to 20 characters: these workspaces hold longer "
            f"values: {', '.join(too_long)}. Shorten them, then run the downgrade again "
            "(nothing was changed)."
        )
    _set_lengths(50, 20)
    for name, _type in reversed(PROFILE_COLUMNS):
        op.drop_column("user", name)
