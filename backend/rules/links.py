"""Links shown to visitors: booking links, an owner's website and social profiles, a
workspace's picture. A visitor clicks (or the browser loads) them as they are, so a
link must lead to a public host and read as what it is:

- no host on this machine or a private network (localhost names, loopback, private,
  link-local, reserved or multicast IP literals, in any spelling `inet_aton` accepts:
  `127.1`, `0x7f000001`, `::ffff:127.0.0.1`), which would point a visitor's browser at
  their own network or at cloud metadata (169.254.169.254);
- no credentials (`https://calendly.com@evil.example/` reads as calendly.com);
- no bidirectional controls or other invisible characters, which can make a link
  display as a different address than the one it opens.
"""

import ipaddress
import socket
import unicodedata
from urllib.parse import urlsplit

# U+202A..U+202E embeddings and overrides, U+2066..U+2069 isolates, LRM/RLM, the Arabic letter mark.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
LOCAL_HOSTNAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
LOCAL_SUFFIXES = (".localhost", ".local", ".localdomain", ".internal", ".home.arpa")
_NUMERIC_HOST_CHARACTERS = frozenset("0123456789abcdefx.")


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names by number (every spelling a resolver accepts), or None."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not host or not set(host) <= _NUMERIC_HOST_CHARACTERS:
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address):
        return address.ipv4_mapped or address.sixtofour or address
    return address


def link_problem(url: str) -> str | None:
    """Why `url` must not be shown to visitors, or None when it may."""
    if any(char in BIDI_CONTROLS for char in url):
        return "must not contain bidirectional control characters"
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in url):
        return "must not contain control or invisible formatting characters"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        return "is not a valid URL"
    if "@" in parts.netloc:
        return "must not contain credentials (user:password@)"
    if host in LOCAL_HOSTNAMES or host.endswith(LOCAL_SUFFIXES):
        return "must not point to this machine or a local network name"
    address = _ip_literal(host)
    if address is not None and (not address.is_global or address.is_multicast):
        return "must not point to a private, loopback, link-local or reserved address"
    return None
