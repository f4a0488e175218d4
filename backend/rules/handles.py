"""Workspace handles: they become public URLs (/<handle>)."""

import re

# Used with fullmatch: `$` would also match before a trailing newline ("demo\n").
HANDLE_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
HANDLE_MIN, HANDLE_MAX = 3, 63
# Handles become public URLs (/<handle>), so names of our own paths are kept back.
RESERVED_HANDLES = frozenset(
    {
        "about", "account", "admin", "administrator", "api", "app", "apps", "assets", "auth",
        "billing", "blog", "chat", "conversations", "dashboard", "docs", "help", "home",
        "internal", "login", "logout", "me", "metrics", "new", "null", "openapi", "public",
        "register", "reset-password", "root", "settings", "signup", "static", "status",
        "support", "system", "undefined", "user", "users", "widget", "workspace",
        "workspaces", "www",
    }
)  # fmt: skip


def handle_problem(value: str) -> str | None:
    """Why `value` cannot be a handle, or None when it can."""
    if not HANDLE_MIN <= len(value) <= HANDLE_MAX:
        return f"Handle must be {HANDLE_MIN} to {HANDLE_MAX} characters long."
    if not HANDLE_RE.fullmatch(value):
        return "Handle may contain lowercase letters, digits and single hyphens between them."
    if value in RESERVED_HANDLES:
        return f"Handle '{value}' is reserved."
    return None
