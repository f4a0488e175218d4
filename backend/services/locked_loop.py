"""A periodic job that every worker process runs and one of them at a time does.

Each tick (every `interval_setting` seconds, from the app's config) takes a Redis lock that
expires before the next tick (SET NX EX) and, if it got it, runs the job in an app context.
When the job returns a count above 0 and the loop has a `report` ("... %d ..."), the count is
logged with it. A failing tick is logged and the loop goes on; the session is removed after
every tick.
"""

import logging
import threading
from collections.abc import Callable

from flask import Flask

from backend.extensions import db, redis_client

log = logging.getLogger(__name__)


class LockedLoop:
    def __init__(
        self, name: str, lock_key: str, interval_setting: str, job: Callable[[], int | None], report: str = ""
    ) -> None:
        self.name, self.lock_key, self.interval_setting = name, lock_key, interval_setting
        self.job, self.report = job, report
        self._stop = threading.Event()

    def start(self, app: Flask) -> None:
        self._stop.clear()
        threading.Thread(target=self._run, args=(app,), daemon=True, name=self.name).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, app: Flask) -> None:
        interval = app.config[self.interval_setting]
        while not self._stop.wait(interval):
            with app.app_context():
                try:
                    if redis_client().set(self.lock_key, "1", nx=True, ex=max(1, int(interval * 0.8))):
                        done = self.job()
                        if done and self.report:
                            log.warning(self.report, done)
                except Exception:
                    log.exception("%s failed", self.name)
                finally:
                    db.session.remove()
