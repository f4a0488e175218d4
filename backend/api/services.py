"""A workspace's bookable services."""

from flask_smorest import Blueprint

URL_PREFIX = "/workspace-services"
blp = Blueprint("workspace-services", __name__, description="A workspace's bookable services.")
