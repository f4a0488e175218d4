"""Celery worker entry point: celery -A celery_app worker."""

from gevent import monkey

if monkey.is_module_patched("socket"):
    # The worker runs a gevent pool: make psycopg2 yield to other greenlets.
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()

from backend import create_app  # noqa: E402

flask_app = create_app()
celery_app = flask_app.extensions["celery"]

import backend.tasks  # noqa: E402,F401  (registers the tasks)
