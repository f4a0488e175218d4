"""Public chat for anonymous visitors."""

from flask_smorest import Blueprint

URL_PREFIX = "/public"
blp = Blueprint("public", __name__, description="Public chat for anonymous visitors.")
