"""Workspaces (one per owner)."""

from flask_smorest import Blueprint

URL_PREFIX = "/workspaces"
blp = Blueprint("workspaces", __name__, description="Workspaces (one per owner).")
