"""The Procfile's `release` and `web` commands, run as real processes against a fresh
PostgreSQL database: migrations, the first superuser, then gunicorn serving the API."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest
import requests
from sqlalchemy.engine import make_url

from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.db_cleanup import admin_connection
from tests.e2e.harness import PASSWORD_HASH_ENV, procfile_command
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
SUPERUSER = "first-admin@example.com"
SUPERUSER_PASSWORD = "first-admin-password"


@pytest.fixture
def fresh_database():
    """An empty database of its own (dropped and created again for every run)."""
    url = TEST_DATABASE_URL + "_e2e"
    name = make_url(url).database
    conn = admin_connection(url)
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    yield url


def process_env(database_url: str, port: int) -> dict:
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PORT=str(port),
        DATABASE_URL=database_url,
        REDIS_URL=TEST_REDIS_URL,
        SECRET_KEY="e2e-secret-key-long-enough-for-hs256-signing",
        ENVIRONMENT="local",
        FIRST_SUPERUSER=SUPERUSER,
        FIRST_SUPERUSER_PASSWORD=SUPERUSER_PASSWORD,
        WEB_CONCURRENCY="1",
        PYTHONUNBUFFERED="1",
        **PASSWORD_HASH_ENV,
    )
    for name in ("CELERY_BROKER_URL", "RATELIMIT_STORAGE_URI"):
        env.pop(name, None)
    return env


def stop(process: subprocess.Popen) -> None:
    """Ends the process group we started (gunicorn and its workers), politely first."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def test_release_then_web_serves_health_and_superuser_login(fresh_database, tmp_path):
    port = free_port()
    env = process_env(fresh_database, port)

    # Twice: the release step must be safe to repeat (migrations at head, superuser kept).
    for attempt in range(2):
        release = subprocess.run(
            ["bash", "-c", procfile_command("release")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert release.returncode == 0, f"release #{attempt + 1} failed:\n{release.stdout}\n{release.stderr}"
    conn = psycopg2.connect(make_url(fresh_database).render_as_string(hide_password=False))
    with conn.cursor() as cur:
        cur.execute('SELECT email, is_superuser FROM "user"')
        assert cur.fetchall() == [(SUPERUSER, True)]
    conn.close()

    log_path = tmp_path / "web.log"
    with open(log_path, "w") as log:
        web = subprocess.Popen(
            ["bash", "-c", procfile_command("web")],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches the workers too
        )
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline:
            assert web.poll() is None, f"web exited early:\n{log_path.read_text()}"
            try:
                health = requests.get(f"{base}/utils/health-check/", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.3)
        assert health is not None, f"web never answered:\n{log_path.read_text()}"
        assert health.status_code == 200, health.text
        assert health.json() == {"status": "ok", "database": "ok", "redis": "ok"}

        login = requests.post(
            f"{base}/login/access-token",
            data={"username": SUPERUSER, "password": SUPERUSER_PASSWORD},
            timeout=10,
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        me = requests.get(f"{base}/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert me.status_code == 200 and me.json()["is_superuser"] is True

        docs = requests.get(f"{base}/docs", timeout=10)
        assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    finally:
        stop(web)
    assert web.poll() is not None
