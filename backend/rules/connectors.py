"""Booking links of scheduling connectors: an https link (a visitor link, backend/rules/links.py)
of the connector's own kind, e.g. a Calendly link names the Calendly user."""

import re
from urllib.parse import urlsplit

from marshmallow import ValidationError
from marshmallow.validate import URL

from backend.rules.links import link_problem

_HTTPS_URL = URL(schemes={"https"}, require_tld=True)
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # used with fullmatch
EXAMPLE_LINKS = {
    "calendly": "https://calendly.com/jane-doe/30min",
    "square": "https://book.squareup.com/appointments/abc123",
    "agendapro": "https://www.agendapro.com/book/my-studio",
}


def usable_link(config) -> str | None:
    """The link a stored connector config hands out to visitors, or None. The API only
    accepts https links; anything else is stale data that must not be handed out."""
    link = config.get("link") if isinstance(config, dict) else None
    if not isinstance(link, str) or not link.strip().startswith("https://"):
        return None
    return link.strip()


def config_problems(connector_type: str, config) -> list[str]:
    """Why `config` is not usable for `connector_type` (empty when it is)."""
    if not isinstance(config, dict):
        return ["config must be an object."]
    example = EXAMPLE_LINKS.get(connector_type, "https://example.com/book")
    link = config.get("link")
    if not isinstance(link, str) or not link.strip():
        return [f"config.link is required: the booking URL, e.g. {example}"]
    problem = link_problem(link)
    if problem:
        return [f"config.link {problem}."]
    try:
        _HTTPS_URL(link)
    except ValidationError:
        return [f"config.link must be an https URL, e.g. {example}"]
    if len(link) > 2048:
        return ["config.link must be at most 2048 characters."]
    parts = urlsplit(link)
    if connector_type == "calendly":
        segments = [s for s in parts.path.split("/") if s]
        if (parts.hostname or "").lower() != "calendly.com":
            return [f"config.link of a calendly connector must be on calendly.com, e.g. {example}"]
        if not 1 <= len(segments) <= 2 or not all(_SLUG.fullmatch(s) for s in segments):
            return [
                "config.link must name the Calendly user: "
                f"https://calendly.com/<username>[/<event>], e.g. {example}"
            ]
    return []
