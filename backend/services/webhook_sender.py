"""One HTTP attempt of a webhook: resolve, refuse forbidden addresses, POST, read a little.

The host is resolved here, at send time, and the request goes to the address that was
checked (the URL names the IP; `Host` and the TLS server name stay the endpoint's own
host), so a DNS answer that changes between the check and the connect (DNS rebinding)
cannot reach an internal address. Redirects are not followed; at most 4 KB of the answer
is read; the secret only ever appears in the signature header.
"""

import logging
import socket
import ssl
import time
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit, urlunsplit

import httpx

from backend.rules.webhooks import forbidden_address, sign

MAX_RESPONSE_BYTES = 4096
USER_AGENT = "SchedulingAssistant-Webhooks/1"


_SENDING: ContextVar[bool] = ContextVar("webhook_sending", default=False)


class _HideWebhookRequests(logging.Filter):
    """httpx logs each request's whole URL at INFO; an endpoint's query string may carry its
    own token, and logs never hold query strings (README, "Logs"): its lines for webhook
    attempts are dropped (the attempt is logged without the URL by the delivery service)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _SENDING.get()


logging.getLogger("httpx").addFilter(_HideWebhookRequests())


@cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context per process: building one (loading the CA bundle) costs more
    than a whole delivery to a fast endpoint. Connections are not shared between attempts."""
    return httpx.create_ssl_context()


class Refused(Exception):
    """The endpoint's address is not one a delivery may reach."""


@dataclass(frozen=True)
class Result:
    status_code: int | None
    error: str | None
    duration_ms: int


def resolve(host: str, port: int, allow_private: bool) -> str:
    """An address of `host` to connect to; Refused if any of its addresses is forbidden."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Refused(f"cannot resolve {host}: {exc}") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise Refused(f"cannot resolve {host}")
    if not allow_private:
        bad = [a for a in addresses if forbidden_address(a)]
        if bad:
            raise Refused(f"{host} resolves to a non-public address ({bad[0]}): refused")
    return addresses[0]


def _pinned_url(url: str, address: str, port: int) -> str:
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    return urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))


def headers_for(secret: str, event_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Webhook-Id": event_id,
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": sign(secret, timestamp, body),
    }


def post(url: str, secret: str, event_id: str, body: bytes, timeout: float, allow_private: bool) -> Result:
    """Makes one attempt; never raises for a network or HTTP failure (they are the Result)."""
    started = time.monotonic()
    status_code, error = None, None
    sending = _SENDING.set(True)
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        address = resolve(host, port, allow_private)
        headers = headers_for(secret, event_id, body)
        headers["Host"] = parts.netloc.rpartition("@")[2]
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False, verify=_tls()) as client,
            client.stream(
                "POST",
                _pinned_url(url, address, port),
                content=body,
                headers=headers,
                extensions={"sni_hostname": host},
            ) as response,
        ):
            status_code = response.status_code
            read = 0
            for chunk in response.iter_raw():
                read += len(chunk)
                if read >= MAX_RESPONSE_BYTES or time.monotonic() - started > timeout:
                    break
    except Refused as exc:
        error = str(exc)
    except httpx.TimeoutException:
        error = f"timed out after {timeout:g} s"
    except (httpx.HTTPError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        _SENDING.reset(sending)
    if status_code is not None and 200 <= status_code < 300:
        error = None  # the endpoint took it, even if the rest of its answer was slow
    elif status_code is not None and error is None:
        error = f"HTTP {status_code}"
    return Result(status_code, error, int((time.monotonic() - started) * 1000))
