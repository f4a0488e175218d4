"""Flask CLI commands: init-data, create-superuser, seed."""

import click
from flask import Flask, current_app
from flask.cli import with_appcontext


def _ensure_first_superuser() -> None:
    from backend.services.users import ensure_superuser

    email = current_app.config["FIRST_SUPERUSER"]
    password = current_app.config["FIRST_SUPERUSER_PASSWORD"]
    if not email or not password:
        raise click.ClickException("Set FIRST_SUPERUSER and FIRST_SUPERUSER_PASSWORD.")
    if not 8 <= len(password) <= 128:
        raise click.ClickException("FIRST_SUPERUSER_PASSWORD must be 8 to 128 characters long.")
    user, created = ensure_superuser(email, password)
    click.echo(f"{'Created' if created else 'Kept existing'} superuser {user.email}")


@click.command("create-superuser")
@with_appcontext
def create_superuser_command() -> None:
    """Create the first superuser from FIRST_SUPERUSER / FIRST_SUPERUSER_PASSWORD (idempotent)."""
    _ensure_first_superuser()


@click.command("init-data")
@with_appcontext
def init_data_command() -> None:
    """Initial data (the template's name for create-superuser); safe to run again."""
    _ensure_first_superuser()


def register(app: Flask) -> None:
    """Adds the project's commands to `flask`."""
    app.cli.add_command(create_superuser_command)
    app.cli.add_command(init_data_command)
    from backend.seed import seed_command

    app.cli.add_command(seed_command)
