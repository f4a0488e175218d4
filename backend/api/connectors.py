"""Scheduling connectors (Calendly, Square, AgendaPro)."""

from flask_smorest import Blueprint

URL_PREFIX = "/connectors"
blp = Blueprint("connectors", __name__, description="Scheduling connectors (Calendly, Square, AgendaPro).")
