"""The reason the agent gives when it asks for a person (tool `request_human`)."""

HANDOFF_REASON_MAX = 500
DEFAULT_HANDOFF_REASON = "The visitor asked to talk to a person."


def clean_reason(reason: str | None) -> str:
    """Whitespace collapsed, at most HANDOFF_REASON_MAX characters; blank: the default."""
    return " ".join((reason or "").split())[:HANDOFF_REASON_MAX] or DEFAULT_HANDOFF_REASON
