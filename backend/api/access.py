"""Who may call a route, checked before the request body or query is parsed.

flask-smorest parses arguments in decorators that run before the view body, so
a check inside the view would let a caller without credentials get a 422 for a
bad body. Both decorators here go above `@blp.arguments`, so 401/403 come first,
as the FastAPI template answers:

- `@authenticated` (owners; `@authenticated(superuser=True)` for superusers only):
  the bearer access token, documented as the one `bearerAuth` scheme;
- `@visitor` (anonymous visitors): the conversation's visitor token, from the
  `X-Visitor-Token` header or the `visitor_token` query (EventSource cannot send headers);
- `@ticket_or_bearer` (the owner's inbox stream): a single-use ticket in the `ticket` query,
  else the bearer access token.

Not a Blueprint module (no `blp`).
"""

import functools
import uuid

from flask import g, request
from flask_jwt_extended import current_user

from backend.auth import require_superuser, require_user
from backend.models import User

BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _with_doc(wrapper, view, **manual_doc):
    """Copies the view's OpenAPI notes to the wrapper and adds `manual_doc` to them.
    (The visitor token is documented as a security scheme by backend/api/openapi.py.)"""
    wrapper._apidoc = {**getattr(view, "_apidoc", {})}
    wrapper._apidoc["manual_doc"] = {**wrapper._apidoc.get("manual_doc", {}), **manual_doc}
    return wrapper


def authenticated(view=None, *, superuser: bool = False):
    """The bearer token of an active user (a superuser with `superuser=True`)."""

    def decorator(inner):
        @functools.wraps(inner)
        def wrapper(*args, **kwargs):
            require_superuser() if superuser else require_user()
            return inner(*args, **kwargs)

        return _with_doc(wrapper, inner, security=BEARER)

    return decorator(view) if view is not None else decorator


def me() -> User:
    """The user `@authenticated` verified (already loaded, no extra query)."""
    return current_user


def visitor(view=None, *, lock: bool = False):
    """The visitor token of the conversation named by the route's `conversation_id`.
    `@visitor(lock=True)` (a route that writes to the conversation): the row is locked by
    the statement that checks the token, and the view finds it in `g.conversation`."""
    from backend.services import chat

    def decorator(inner):
        @functools.wraps(inner)
        def wrapper(*args, **kwargs):
            conversation_id: uuid.UUID = kwargs["conversation_id"]
            token = request.headers.get("X-Visitor-Token") or request.args.get("visitor_token")
            g.conversation = chat.authorize_visitor(conversation_id, token, lock=lock)
            return inner(*args, **kwargs)

        return _with_doc(wrapper, inner)

    return decorator(view) if view is not None else decorator


def ticket_or_bearer(view):
    """A ticket for the route's `workspace_id` (query `ticket`, single use; 401 when used,
    expired or another workspace's), else the bearer access token; the user is `g.inbox_user`."""
    from backend.services import inbox

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        ticket = request.args.get("ticket")
        if ticket:
            g.inbox_user = inbox.redeem_ticket(kwargs["workspace_id"], ticket)
        else:
            g.inbox_user = require_user()
        return view(*args, **kwargs)

    return _with_doc(wrapper, view, security=BEARER)
