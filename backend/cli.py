"""Flask CLI commands: init-data, create-superuser, seed."""

import click
from flask import Flask, current_app
from flask.cli import with_appcontext


def _ensure_first_superuser() -> None:
    """Creates FIRST_SUPERUSER when no account has that address; an existing superuser is
    kept as it is. An existing account that is not a superuser is never promoted (whoever
    signed up under that address first would become a superuser): the command fails."""
    from backend.rules.identity import email_problem, normalize_email
    from backend.rules.passwords import password_problem
    from backend.services.users import ensure_superuser

    email = current_app.config["FIRST_SUPERUSER"]
    password = current_app.config["FIRST_SUPERUSER_PASSWORD"]
    if not email or not password:
        raise click.ClickException("Set FIRST_SUPERUSER and FIRST_SUPERUSER_PASSWORD.")
    problem = password_problem(password, "FIRST_SUPERUSER_PASSWORD")
    if problem:
        raise click.ClickException(problem)
    problem = email_problem(normalize_email(email))
    if problem:
        raise click.ClickException(f"FIRST_SUPERUSER: {problem}")
    user, created = ensure_superuser(email, password)
    if created:
        click.echo(f"Created superuser {user.email}")
    elif not user.is_superuser:
        raise click.ClickException(
            f"{user.email} belongs to an existing account that is not a superuser; it was left "
            "as it is. Promote it as a superuser (PATCH /api/v1/users/<id> with is_superuser) "
            "if it is yours, or set FIRST_SUPERUSER to another address."
        )
    elif not user.is_active:
        click.echo(f"Kept existing superuser {user.email} (inactive: it cannot log in)")
    else:
        click.echo(f"Kept existing superuser {user.email}")


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
