"""Conversations (owner side)."""

from flask_smorest import Blueprint

URL_PREFIX = "/conversations"
blp = Blueprint("conversations", __name__, description="Conversations (owner side).")
