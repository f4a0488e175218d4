"""Tones: these have tuned prompt instructions and degraded-reply templates; any other
tone (free text) is the owner's own description of the voice."""

DEFAULT_TONE = "professional"
TONES = ("professional", "friendly", "casual", "formal", "playful")
