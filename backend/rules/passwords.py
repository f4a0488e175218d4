"""Passwords: 8 to 128 characters (template behaviour); the hash does the rest."""

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128


def password_problem(password: str, name: str = "Password") -> str | None:
    """Why `password` cannot be set, or None when it can."""
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        return f"{name} must be {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters long."
    return None
