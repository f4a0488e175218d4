"""Rate limits that Flask-Limiter's decorators cannot express (the Retry-After rule: errors.py).

The per-conversation message budget is spent only by messages that are accepted:
the view spends it after the visitor token and the body were checked and after an
idempotent replay was answered, so a bad request, a caller without the token or a
retry of an accepted message never uses it up. Not a Blueprint module (no `blp`).
"""

import uuid

from flask import current_app
from limits import parse

from backend.errors import too_many_requests
from backend.extensions import limiter


def spend_message_budget(conversation_id: uuid.UUID) -> None:
    """Counts one accepted visitor message; 429 once the conversation's budget is spent."""
    if not limiter.enabled:
        return
    item = parse(current_app.config["PUBLIC_MESSAGE_RATE_LIMIT_PER_CONVERSATION"])
    key = ("public-messages", str(conversation_id))
    try:
        if limiter.limiter.hit(item, *key):
            return
        reset_at, _remaining = limiter.limiter.get_window_stats(item, *key)
    except Exception:  # the limit's storage (Redis) is down: fail open, as every other limit does
        current_app.logger.warning("message budget not checked: rate-limit storage unreachable")
        return
    raise too_many_requests(reset_at)
