"""The fuzzers skip hashing the tables (and restoring the world) while PostgreSQL's
transaction snapshot stands still: these show that a write moves it, a read does not, and
the table digests then name the table written to."""

from sqlalchemy import select, text, update

from backend.extensions import db
from backend.models import Workspace
from tests.fuzz.test_hostile_bodies import Tables
from tests.fuzz.world import transaction_snapshot


def test_a_read_leaves_the_snapshot_and_a_write_moves_it(world):
    before = transaction_snapshot()
    db.session.execute(select(Workspace.name)).all()
    db.session.commit()
    assert transaction_snapshot() == before

    db.session.execute(update(Workspace).where(Workspace.id == world.workspace_id).values(name="Written"))
    db.session.commit()
    assert transaction_snapshot() != before


def test_digests_name_the_table_a_commit_wrote_to(world):
    tables = Tables()
    before = tables.digests()
    assert tables.digests() == before

    db.session.execute(update(Workspace).where(Workspace.id == world.workspace_id).values(name="Written"))
    db.session.commit()
    after = tables.digests()
    assert [name for name in before if before[name] != after[name]] == ["workspaces"]


def test_a_rolled_back_write_changes_no_digest(world):
    tables = Tables()
    before = tables.digests()
    db.session.execute(update(Workspace).where(Workspace.id == world.workspace_id).values(name="Undone"))
    db.session.execute(text("SELECT 1"))
    db.session.rollback()
    assert tables.digests() == before


def test_restore_puts_back_what_a_write_removed_and_skips_when_nothing_was_written(world):
    generation = world.generation
    world.restore()
    assert world.generation == generation

    db.session.execute(update(Workspace).where(Workspace.id == world.workspace_id).values(is_active=False))
    db.session.commit()
    world.restore()
    assert world.generation == generation + 1
    assert db.session.get(Workspace, world.workspace_id).is_active is True
