"""Accent folding, so "Café" meets "cafe" (matching words) and "José" makes "jose" (slugs)."""

import unicodedata


def fold(text: str) -> str:
    """Case-folded, with accents and other combining marks removed."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def to_ascii(text: str) -> str:
    """Compatibility-decomposed, keeping only ASCII characters (accents dropped)."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
