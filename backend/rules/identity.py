"""Email addresses as identities: one normal form, and addresses that only pretend to be another.

An account is its normalised address: NFKC (fullwidth "Ａ" becomes "A", ligatures split)
and lower-case, so `DEMO@example.com` and `ｄｅｍｏ@example.com` are the demo user.
Normalising cannot catch look-alikes from another script (Cyrillic "а" in "аdmin"), so
a local part or domain mixing scripts is refused where an address is chosen.
"""

import unicodedata

# Scripts that legitimately appear together in one name (Unicode TS #39, "highly restrictive").
_COMPATIBLE_SCRIPT_SETS = (
    frozenset({"LATIN", "CJK", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "CJK", "BOPOMOFO"}),
    frozenset({"LATIN", "CJK", "HANGUL"}),
)
# First words of character names that are not a script of their own.
_SCRIPT_NEUTRAL = frozenset({"MODIFIER", "KATAKANA-HIRAGANA", "FULLWIDTH", "HALFWIDTH"})
MIXED_SCRIPTS_MESSAGE = "Email address mixes alphabets (e.g. Latin and Cyrillic letters)."


def normalize_email(value: str) -> str:
    """The form an address is stored, compared and looked up in."""
    folded = unicodedata.normalize("NFKC", value).strip().lower()
    # Lower-casing can leave a string NFKC would change again ("İ" -> "i̇"): fold to a fixed point.
    return unicodedata.normalize("NFKC", folded)


def _scripts(text: str) -> set[str]:
    scripts = set()
    for char in text:
        if not unicodedata.category(char).startswith("L"):
            continue  # digits, punctuation and combining marks belong to no one script
        script = unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]
        if script not in _SCRIPT_NEUTRAL:
            scripts.add(script)
    return scripts


def mixes_scripts(text: str) -> bool:
    scripts = _scripts(text)
    return len(scripts) > 1 and not any(scripts <= allowed for allowed in _COMPATIBLE_SCRIPT_SETS)


def _decoded_labels(domain: str) -> str:
    """The domain with punycode labels (xn--) shown as the letters they stand for."""
    labels = []
    for label in domain.split("."):
        if label.startswith("xn--"):
            try:
                label = label[4:].encode("ascii").decode("punycode")
            except (UnicodeError, ValueError):
                pass
        labels.append(label)
    return ".".join(labels)


def email_problem(address: str) -> str | None:
    """Why a (normalised) address cannot name an account, or None when it can."""
    local, _, domain = address.rpartition("@")
    if mixes_scripts(local) or any(mixes_scripts(label) for label in _decoded_labels(domain).split(".")):
        return MIXED_SCRIPTS_MESSAGE
    return None
