"""Flask CLI commands: init-data, create-superuser, seed."""

from flask import Flask


def register(app: Flask) -> None:
    """Adds the project's commands to `flask`."""
