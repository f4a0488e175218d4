"""account security: normalised email addresses, token versions

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 09:00:00.000000

Email addresses become one account per normalised address (NFKC, lower-case; the
rule of backend/identity.py, copied here so this revision never changes meaning).
Existing rows are rewritten to that form; when two accounts would end up with the
same address the upgrade stops before changing anything and names them, so a
person decides which account keeps the address (nothing is merged silently).
The unique index ix_user_email then holds one row per normalised address.

`user.token_version` counts password changes; tokens carry the version they were
issued under (backend/auth.py, backend/security.py).

Downgrade drops token_version; addresses stay in their normalised form.
"""

import unicodedata
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

USERS = sa.table("user", sa.column("id", sa.Uuid()), sa.column("email", sa.String(255)))


def normalise(address: str) -> str:
    folded = unicodedata.normalize("NFKC", address).strip().lower()
    return unicodedata.normalize("NFKC", folded)


def collisions(addresses) -> dict[str, list[str]]:
    """{normalised address: [stored addresses]} for every address more than one account maps to."""
    groups = defaultdict(list)
    for address in addresses:
        groups[normalise(address)].append(address)
    return {target: sorted(found) for target, found in groups.items() if len(found) > 1}


def upgrade():
    bind = op.get_bind()
    rows = bind.execute(sa.select(USERS.c.id, USERS.c.email)).all()
    clashes = collisions(email for _, email in rows)
    if clashes:
        listed = "; ".join(f"{', '.join(found)} -> {target}" for target, found in sorted(clashes.items()))
        raise RuntimeError(
            "Cannot give every account its normalised email address: these accounts would share "
            f"one: {listed}. Change or remove all but one account of each group, then run the "
            "upgrade again (nothing was changed)."
        )
    # No two rows share a target (checked above), so no update can hit the unique index.
    for user_id, email in rows:
        if normalise(email) != email:
            bind.execute(USERS.update().where(USERS.c.id == user_id).values(email=normalise(email)))

    op.add_column("user", sa.Column("token_version", sa.Integer(), server_default="0", nullable=False))


def downgrade():
    # A plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35 too): rebuilding the table on
    # SQLite would cascade-delete the rows that reference users.
    op.drop_column("user", "token_version")
