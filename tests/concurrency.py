"""Runs several requests at the same moment, each in its own thread, app context and client."""

import threading

from backend.extensions import db


def run_concurrently(app, calls):
    """Calls each `call(client)` in its own thread, all released together; returns the results."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        with app.app_context():
            client = app.test_client()
            barrier.wait()
            try:
                results[i] = call(client)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
