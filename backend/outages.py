"""Riding out a dependency that is down for a moment (Redis restarting, PostgreSQL failing
over): an idempotent call is tried again with backoff until it works or time runs out."""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def retry_during_outage(
    call: Callable[[], T],
    errors: type[BaseException] | tuple[type[BaseException], ...],
    seconds: float,
    what: str,
    is_outage: Callable[[BaseException], bool] = lambda _error: True,
    after_failure: Callable[[], object] | None = None,
    first_delay: float = 0.2,
    max_delay: float = 2.0,
) -> T:
    """`call()`, tried again while it raises one of `errors` that `is_outage` accepts, for at
    most `seconds`; then the last error is raised. `after_failure` runs after each failed try
    (e.g. a session rollback). Only for calls that are safe to repeat."""
    deadline = time.monotonic() + seconds
    delay = first_delay
    while True:
        try:
            return call()
        except errors as error:
            if not is_outage(error) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%s: %s); trying again in %.1fs", what, type(error).__name__, error, delay)
            if after_failure is not None:
                after_failure()
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
