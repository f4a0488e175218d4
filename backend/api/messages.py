"""Messages (owner side)."""

from flask_smorest import Blueprint

URL_PREFIX = "/messages"
blp = Blueprint("messages", __name__, description="Messages (owner side).")
