"""Health check and utilities."""

from flask_smorest import Blueprint

URL_PREFIX = "/utils"
blp = Blueprint("utils", __name__, description="Health check and utilities.")
