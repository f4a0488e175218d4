"""User accounts."""

from flask_smorest import Blueprint

URL_PREFIX = "/users"
blp = Blueprint("users", __name__, description="User accounts.")
