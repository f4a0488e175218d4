"""The webhook rules: signatures checked by an independent implementation, the
addresses a delivery may reach, URLs, and the retry schedule."""

import hashlib
import hmac
import random

import pytest

from backend.rules.webhooks import (
    DEFAULT_RETRY_SCHEDULE,
    forbidden_address,
    is_success,
    new_secret,
    parse_schedule,
    retry_delay,
    sign,
    url_problem,
    verify,
)


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    secret, body = "whsec_test", b'{"id":"e1","type":"message.created"}'
    expected = hmac.new(b"whsec_test", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(secret, 1700000000, body) == f"v1={expected}"
    assert verify(secret, 1700000000, body, f"v1={expected}")
    assert not verify(secret, 1700000001, body, f"v1={expected}")
    assert not verify("other", 1700000000, body, f"v1={expected}")
    assert not verify(secret, 1700000000, body + b" ", f"v1={expected}")


def test_secrets_are_long_and_different():
    one, two = new_secret(), new_secret()
    assert one != two and one.startswith("whsec_") and len(one) > 40


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
        "100.100.100.200", "0.0.0.0", "::1", "::", "fe80::1", "fd00:ec2::254", "::ffff:127.0.0.1",
        "::ffff:169.254.169.254", "224.0.0.1", "255.255.255.255", "not-an-ip", "fe80::1%eth0",
    ],
)  # fmt: skip
def test_non_public_addresses_are_forbidden(address):
    assert forbidden_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert not forbidden_address(address)


@pytest.mark.parametrize(
    ("url", "allow_http", "problem"),
    [
        ("https://hooks.example.com/in?x=1", False, None),
        ("http://hooks.example.com/in", True, None),
        ("http://hooks.example.com/in", False, "Must be an https:// URL."),
        ("ftp://hooks.example.com/in", True, "Must be an http(s):// URL."),
        ("https:///path", False, "Must name a host."),
        ("https://user:pw@hooks.example.com/", False, "Must not carry credentials."),
        ("https://hooks.example.com/#frag", False, "Must not have a fragment."),
        ("https://hooks.example.com:99999/", False, "Not a valid URL."),
        ("https://hooks.example.com:0/", False, "Not a valid port."),
        ("https://hooks.example.com/ x", False, "Must not contain spaces or control characters."),
        ("https://[::1/", False, "Not a valid URL."),
        ("https://h.example.com/" + "a" * 2048, False, "Must be at most 2048 characters."),
    ],
)
def test_url_rules(url, allow_http, problem):
    assert url_problem(url, allow_http) == problem


def test_schedule_parsing():
    assert parse_schedule(None) == DEFAULT_RETRY_SCHEDULE
    assert parse_schedule("1, 2,3") == (1, 2, 3)
    assert parse_schedule("") == ()
    with pytest.raises(ValueError):
        parse_schedule("5,-1")
    assert sum(DEFAULT_RETRY_SCHEDULE) / 3600 == pytest.approx(23.7, abs=0.1)  # ~24 h


def test_backoff_follows_the_schedule_with_jitter_then_stops():
    rng = random.Random(7)
    schedule = (10, 100, 1000)
    for attempts_made, base in enumerate(schedule, start=1):
        delays = [retry_delay(schedule, attempts_made, rng) for _ in range(200)]
        assert all(base * 0.8 <= d <= base * 1.2 for d in delays)
        assert len({round(d, 6) for d in delays}) > 100  # jittered, not constant
    assert retry_delay(schedule, 4, rng) is None
    assert retry_delay(schedule, 0, rng) is None
    assert retry_delay((), 1) is None


def test_success_is_2xx():
    assert is_success(200) and is_success(204) and is_success(299)
    assert not is_success(None) and not is_success(301) and not is_success(500) and not is_success(199)
