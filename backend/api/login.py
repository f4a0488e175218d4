"""Access tokens and password recovery."""

from flask_smorest import Blueprint

URL_PREFIX = ""
blp = Blueprint("login", __name__, description="Access tokens and password recovery.")
