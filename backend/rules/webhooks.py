"""Webhook rules: the event catalogue, the signature scheme, which addresses a delivery may
reach, and the retry schedule. Pure functions (no app, no I/O besides the clock passed in).
"""

import hashlib
import hmac
import ipaddress
import random
import secrets
from urllib.parse import urlsplit

EVENT_TYPES = (
    "conversation.created",
    "message.created",
    "reply.completed",
    "handoff.requested",
    "booking_link.shared",
)
MAX_SUBSCRIPTIONS_PER_WORKSPACE = 10
MAX_URL_LENGTH = 2048
SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
# Svix's schedule: ~24 hours over 10 retries after the first attempt.
DEFAULT_RETRY_SCHEDULE = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800)
JITTER = 0.2  # each delay is drawn from [d * (1 - JITTER), d * (1 + JITTER)]


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Webhook-Signature` value: `v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify(secret: str, timestamp: int, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def url_problem(url: str, allow_http: bool) -> str | None:
    """Why `url` cannot receive webhooks (None when it can): https (or http when allowed),
    a host, no credentials, no fragment, no whitespace or control characters."""
    if len(url) > MAX_URL_LENGTH:
        return f"Must be at most {MAX_URL_LENGTH} characters."
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "Must not contain spaces or control characters."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "Not a valid URL."
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme.lower() not in schemes:
        return "Must be an https:// URL." if not allow_http else "Must be an http(s):// URL."
    if not parts.hostname:
        return "Must name a host."
    if parts.username is not None or parts.password is not None:
        return "Must not carry credentials."
    if parts.fragment:
        return "Must not have a fragment."
    if port == 0:
        return "Not a valid port."
    return None


def forbidden_address(address: str) -> bool:
    """Whether a resolved address is off limits: anything not globally routable (loopback,
    private, link-local with cloud metadata services, CGNAT, reserved, unspecified) and
    multicast; IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def parse_schedule(text: str | None) -> tuple[int, ...]:
    """`"5,30,120"` -> (5, 30, 120): seconds before each retry; empty means no retry."""
    if text is None:
        return DEFAULT_RETRY_SCHEDULE
    values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    if any(value < 0 for value in values):
        raise ValueError("retry delays must be >= 0 seconds")
    return values


def retry_delay(
    schedule: tuple[int, ...], attempts_made: int, rng: random.Random | None = None
) -> float | None:
    """Seconds to wait after `attempts_made` failed attempts, jittered; None when the
    schedule is spent (the delivery has failed for good)."""
    if attempts_made < 1 or attempts_made > len(schedule):
        return None
    base = schedule[attempts_made - 1]
    return (rng or random).uniform(base * (1 - JITTER), base * (1 + JITTER))


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300
