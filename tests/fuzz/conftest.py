"""Fixtures of the fuzz tests: the world they run against, a short event stream, and a
count of the requests they sent (printed at the end of the run)."""

import collections
import time

import pytest
from _pytest.nodeid import coerce_node_id
from _pytest.nodes import Node

from tests.fuzz.world import World

if not hasattr(Node, "_nodeid"):
    # schemathesis' pytest fixture integration renames the running item to
    # "test[METHOD /path]" through `node._nodeid`, which pytest 9.2 replaced by `node._id`.
    Node._nodeid = property(
        lambda node: str(node._id),
        lambda node, value: setattr(node, "_id", coerce_node_id(value)),
    )

# (test, role) -> number of requests sent; (test, role, status) -> responses;
# (test, "*") -> seconds spent; (role, operation) -> successful (2xx) responses.
REQUESTS: collections.Counter = collections.Counter()
STATUSES: collections.Counter = collections.Counter()
SECONDS: collections.Counter = collections.Counter()
SUCCESSES: collections.Counter = collections.Counter()
OPERATIONS: set = set()


@pytest.fixture
def world(app):
    """Fresh objects for one fuzz test (the autouse fixture truncates the tables after it)."""
    return World().build()


@pytest.fixture
def short_streams(app, monkeypatch):
    """An event stream answers its headers and closes almost at once, so a fuzzed request
    to it does not hang for SSE_MAX_SECONDS."""
    monkeypatch.setitem(app.config, "SSE_MAX_SECONDS", 0.05)
    monkeypatch.setitem(app.config, "SSE_HEARTBEAT_SECONDS", 0.05)


@pytest.fixture
def request_counter(request):
    """`count(role, operation, status)` records one request this test sent as `role`."""
    name = request.node.originalname
    started = time.monotonic()

    def count(role: str, operation: str, status: int) -> None:
        REQUESTS[(name, role)] += 1
        STATUSES[(name, role, f"{status // 100}xx")] += 1
        OPERATIONS.add((role, operation))
        if status < 300:
            SUCCESSES[(role, operation)] += 1

    yield count
    SECONDS[(name, "*")] += time.monotonic() - started


def pytest_terminal_summary(terminalreporter):
    if not REQUESTS:
        return
    terminalreporter.section("fuzz requests")
    for (name, role), n in sorted(REQUESTS.items()):
        classes = ", ".join(
            f"{cls} {STATUSES[(name, role, cls)]}"
            for cls in ("2xx", "4xx", "5xx")
            if STATUSES[(name, role, cls)]
        )
        terminalreporter.write_line(f"{name:<32} {role:<10} {n:>6} requests ({classes})")
    # Anonymous callers and the rate-limit probe are expected to be refused on most routes.
    never = sorted(
        f"{role}: {op}"
        for role, op in OPERATIONS
        if not SUCCESSES[(role, op)] and role not in ("anonymous", "rate-limits")
    )
    if never:
        terminalreporter.write_line(f"operations without a 2xx answer ({len(never)}): " + "; ".join(never))
    total_seconds = sum(SECONDS.values())
    terminalreporter.write_line(f"total: {sum(REQUESTS.values())} requests in {total_seconds:.1f} s")
