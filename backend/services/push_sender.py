"""One request to Expo's push API: POST a JSON array of messages, read the JSON answer.

Never raises for a network or HTTP failure: they are the Result, judged by
`backend.rules.push.judge`. Tokens never appear in logs (httpx logs only the URL).
"""

import json
import time
from dataclasses import dataclass

import httpx

MAX_RESPONSE_BYTES = 1024 * 1024
USER_AGENT = "SchedulingAssistant-Push/1"


@dataclass(frozen=True)
class Result:
    status_code: int | None
    body: object  # the parsed JSON answer, or None
    error: str | None
    duration_ms: int


def post(url: str, messages: list[dict], timeout: float, access_token: str | None = None) -> Result:
    started = time.monotonic()
    headers = {
        "Accept": "application/json",
        "Accept-Encoding": "gzip, deflate",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    if access_token:
        headers["Authorization"] = f"Bearer {access_token}"
    payload = json.dumps(messages, separators=(",", ":"), ensure_ascii=False).encode()
    status_code, body, error = None, None, None
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.post(url, content=payload, headers=headers)
            status_code = response.status_code
            raw = response.content[:MAX_RESPONSE_BYTES]
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            error = f"HTTP {status_code}: the answer is not JSON"
    except httpx.TimeoutException:
        error = f"timed out after {timeout:g} s"
    except (httpx.HTTPError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    return Result(status_code, body, error, int((time.monotonic() - started) * 1000))
