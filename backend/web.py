"""Routes outside the JSON API: the visitor demo page and the metrics endpoint."""

from flask import Flask


def register_web(app: Flask) -> None:
    """Registers non-API routes (filled in by the operator features)."""
