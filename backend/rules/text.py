"""Storable text: every string the API accepts ends up in PostgreSQL text columns, JSON
columns or Redis, and must be the same on SQLite. PostgreSQL refuses NUL in text, and
a lone UTF-16 surrogate (JSON allows "\\ud800") cannot be encoded as UTF-8 at all, so
such a string is refused where it enters, not when the database chokes on it.
"""

import re

_UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_TEXT_MESSAGE = "Must be valid text: NUL characters and unpaired surrogates are not allowed."


def is_storable_text(text: str) -> bool:
    return _UNSTORABLE_CHARACTER.search(text) is None


def holds_unstorable_text(value) -> bool:
    """Whether any string in a JSON-like value (keys included) breaks the rule (no recursion)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not is_storable_text(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False
