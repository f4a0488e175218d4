"""Push notification rules: what an Expo push token looks like, the messages an owner's phone
gets, how Expo's answer is read and how long to wait before the next attempt. Pure functions
(no app, no I/O).

Expo's wire format (https://docs.expo.dev/push-notifications/sending-notifications/): a POST
of a JSON array of at most 100 messages `{to, title, body, data, sound, priority}`; a 200
answers `{"data": [ticket, ...]}` in the same order, each ticket `{"status": "ok", "id"}` or
`{"status": "error", "message", "details": {"error": "DeviceNotRegistered" | ...}}`; a
request-level failure answers `{"errors": [{"code", "message"}]}` with a 4xx or 5xx.
"""

import random
import re
from dataclasses import dataclass

TOKEN_MAX = 255
# `ExponentPushToken[...]` (the classic form) or `ExpoPushToken[...]`; the inside is what
# Expo issues (base64url-like). Nothing that could change the meaning of a URL path.
TOKEN_PATTERN = re.compile(r"(?:ExponentPushToken|ExpoPushToken)\[[A-Za-z0-9_\-:.+=]{1,230}\]")
TOKEN_DESCRIPTION = (
    "An Expo push token: `ExponentPushToken[...]` or `ExpoPushToken[...]`, at most 255 characters"
)
MAX_MESSAGES_PER_REQUEST = 100
TITLE_MAX = 100
BODY_MAX = 500
HANDOFF = "handoff.requested"
NEW_CONVERSATION = "conversation.created"
# Ticket errors: the device is gone (forget its token), or Expo asks us to slow down (retry).
DEVICE_NOT_REGISTERED = "DeviceNotRegistered"
TRANSIENT_TICKET_ERRORS = frozenset({"MessageRateExceeded"})
JITTER = 0.2


def is_push_token(value: object) -> bool:
    return isinstance(value, str) and len(value) <= TOKEN_MAX and TOKEN_PATTERN.fullmatch(value) is not None


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _who(visitor_name: str | None) -> str:
    name = " ".join((visitor_name or "").split())
    return name or "A visitor"


@dataclass(frozen=True)
class Notice:
    """What the owner's phones show; `data` reaches the app (never the visitor token)."""

    type: str
    title: str
    body: str
    data: dict


def handoff_notice(conversation_id, workspace_id, visitor_name: str | None, reason: str | None) -> Notice:
    title = _clip(f"{_who(visitor_name)} asked for a person", TITLE_MAX)
    body = _clip(reason or "", BODY_MAX) or "They would like to talk to someone from the business."
    return Notice(HANDOFF, title, body, _data(HANDOFF, conversation_id, workspace_id))


def new_conversation_notice(conversation_id, workspace_id, visitor_name: str | None) -> Notice:
    body = _clip(f"{_who(visitor_name)} started a conversation.", BODY_MAX)
    data = _data(NEW_CONVERSATION, conversation_id, workspace_id)
    return Notice(NEW_CONVERSATION, "New conversation", body, data)


def _data(kind: str, conversation_id, workspace_id) -> dict:
    return {"type": kind, "conversation_id": str(conversation_id), "workspace_id": str(workspace_id)}


def messages(tokens: list[str], title: str, body: str, data: dict) -> list[dict]:
    """One Expo message per token (the caller sends at most MAX_MESSAGES_PER_REQUEST at once)."""
    return [
        {"to": token, "title": title, "body": body, "data": data, "sound": "default", "priority": "high"}
        for token in tokens
    ]


def chunks(tokens: list[str], size: int = MAX_MESSAGES_PER_REQUEST) -> list[list[str]]:
    return [tokens[i : i + size] for i in range(0, len(tokens), size)]


@dataclass(frozen=True)
class Verdict:
    """Expo's answer to one request, token by token."""

    sent: tuple[str, ...] = ()  # Expo took the message
    unregistered: tuple[str, ...] = ()  # DeviceNotRegistered: forget the token
    retry: tuple[str, ...] = ()  # try these again later
    dropped: tuple[str, ...] = ()  # refused for good (message too big, bad credentials...)
    error: str | None = None


def _request_error(body: object) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        if isinstance(first, dict):
            return f"{first.get('code', 'error')}: {first.get('message', '')}"[:300]
    return None


def judge(status_code: int | None, body: object, tokens: list[str], error: str | None = None) -> Verdict:
    """Reads Expo's answer to a request for `tokens`: no answer (timeout, connection), a 5xx
    or a 429 means try them all again; another 4xx drops them; a 200 is read ticket by ticket."""
    all_tokens = tuple(tokens)
    if status_code is None:
        return Verdict(retry=all_tokens, error=error or "no answer")
    if status_code >= 500 or status_code == 429:
        return Verdict(retry=all_tokens, error=_request_error(body) or f"HTTP {status_code}")
    if status_code != 200:
        return Verdict(dropped=all_tokens, error=_request_error(body) or f"HTTP {status_code}")
    tickets = body.get("data") if isinstance(body, dict) else None
    if not isinstance(tickets, list) or len(tickets) != len(tokens):
        return Verdict(retry=all_tokens, error="Expo's answer did not list one ticket per message")
    sent, unregistered, retry, dropped, errors = [], [], [], [], []
    for token, ticket in zip(tokens, tickets, strict=True):
        if isinstance(ticket, dict) and ticket.get("status") == "ok":
            sent.append(token)
            continue
        details = ticket.get("details") if isinstance(ticket, dict) else None
        code = details.get("error") if isinstance(details, dict) else None
        errors.append(str(code or "error"))
        if code == DEVICE_NOT_REGISTERED:
            unregistered.append(token)
        elif code in TRANSIENT_TICKET_ERRORS:
            retry.append(token)
        else:
            dropped.append(token)
    return Verdict(
        tuple(sent),
        tuple(unregistered),
        tuple(retry),
        tuple(dropped),
        ", ".join(sorted(set(errors))) or None,
    )


def merge(verdicts: list[Verdict]) -> Verdict:
    errors = [v.error for v in verdicts if v.error]
    return Verdict(
        tuple(t for v in verdicts for t in v.sent),
        tuple(t for v in verdicts for t in v.unregistered),
        tuple(t for v in verdicts for t in v.retry),
        tuple(t for v in verdicts for t in v.dropped),
        "; ".join(errors)[:1000] or None,
    )


def retry_delay(
    attempts_made: int, base: float, cap: float, max_attempts: int, rng: random.Random | None = None
) -> float | None:
    """Seconds before the next attempt after `attempts_made` attempts: `base` doubled each
    time, at most `cap`, jittered by ±20 %; None once `max_attempts` have been made."""
    if attempts_made < 1 or attempts_made >= max_attempts:
        return None
    delay = min(cap, base * 2 ** (attempts_made - 1))
    return (rng or random).uniform(delay * (1 - JITTER), delay * (1 + JITTER))
