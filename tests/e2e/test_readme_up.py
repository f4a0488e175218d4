"""The README's run command does what the README says, from a fresh clone of the committed
tree: `bash .ci/up` runs the release step and the demo seed, then web + worker + webhooks + Flower
under honcho, and every URL of the README's "Then open:" list answers.

The clone gets ports of its own (PORT / FLOWER_PORT: the README's 8000 and 5555 are
rewritten), the embedded SQLite database under its own instance/, and the tests' Redis
database (flushed after every test; the e2e stack's broker is on another one, so no other
process takes its tasks). Its .venv is a link to this interpreter's virtualenv: the install
step checks first and installs only what is missing, here nothing."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import TEST_REDIS_URL
from tests.e2e.harness import PASSWORD_HASH_ENV
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
# The ports the README names, and the variable that moves each.
README_PORTS = {8000: "PORT", 5555: "FLOWER_PORT"}
ORIGIN = re.compile(r"http://localhost:(\d+)")


def readme_urls(readme: str) -> list[tuple[str, dict | None]]:
    """(url, the JSON body the README shows for it, if any) for every URL of the "Then open:"
    list; a path written on its own (`/api/v1/openapi.json`) is on its line's host."""
    block = readme.split("\nThen open:\n", 1)[1].split("\n\n", 1)[0]
    urls = []
    for line in block.splitlines():
        assert line.startswith("- "), line
        [url] = re.findall(r"http://localhost:\d+[^\s`]*", line)
        body = re.search(r"`(\{.*?\})`", line)
        urls.append((url, json.loads(body.group(1)) if body else None))
        origin = ORIGIN.match(url).group(0)
        urls += [(origin + path, None) for path in re.findall(r"`(/[^`\s]*)`", line)]
    return urls


def rewrite_port(url: str, ports: dict[str, str]) -> str:
    port = int(ORIGIN.match(url).group(1))
    assert port in README_PORTS, f"the README names port {port}, which no setting moves: {url}"
    return ORIGIN.sub(f"http://127.0.0.1:{ports[README_PORTS[port]]}", url, count=1)


def up_env(**extra) -> dict:
    drop = (
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "RATELIMIT_STORAGE_URI",
        "FLOWER_BASIC_AUTH",
        "PORT",
        "FLOWER_PORT",
        "HOST",
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in drop and not k.startswith(("GROQ_", "PYTEST_", "VIRTUAL_ENV"))
    }
    env.pop("ENVIRONMENT", None)
    env.pop("SECRET_KEY", None)
    env.update(
        REDIS_URL=TEST_REDIS_URL,
        WEB_CONCURRENCY="1",
        WORKER_CONCURRENCY="10",
        PYTHONUNBUFFERED="1",
        **PASSWORD_HASH_ENV,
        **extra,
    )
    return env


def start_up(clone: Path, env: dict, log: Path) -> subprocess.Popen:
    """`bash .ci/up` in the clone, in a process group of its own (honcho's, once it execs)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["bash", ".ci/up"],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_up(up: subprocess.Popen, log: Path) -> None:
    """Ctrl-C's job: SIGTERM to honcho, which stops its processes; each must end on it."""
    children = honcho_children(log.read_text())
    assert set(children) == {"web", "worker", "webhooks", "flower"}, log.read_text()[-4000:]
    os.killpg(up.pid, signal.SIGTERM)
    up.wait(timeout=30)
    output = log.read_text()
    assert "SIGKILL" not in output, output[-4000:]  # honcho did not have to force any
    assert still_running(children) == [], output[-4000:]


def kill_leftovers(up: subprocess.Popen, log: Path) -> None:
    """After a failure: the process groups this test started, honcho's children included."""
    for pgid in [up.pid, *honcho_children(log.read_text()).values()]:
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
    up.wait(timeout=10)


def wait_for_output(up: subprocess.Popen, log: Path, texts: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(text in log.read_text() for text in texts):
        assert up.poll() is None, f"bash .ci/up exited with {up.returncode}:\n{log.read_text()[-6000:]}"
        assert time.monotonic() < deadline, f"no {texts} within {timeout}s:\n{log.read_text()[-6000:]}"
        time.sleep(0.1)


def get_when_up(url: str, up: subprocess.Popen, log: Path, timeout: float = 60) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        assert up.poll() is None, f"bash .ci/up exited with {up.returncode}:\n{log.read_text()[-6000:]}"
        try:
            return requests.get(url, timeout=5)
        # gunicorn listens before its worker has booted: a connection can be accepted and then
        # wait for the boot, longer than the read timeout while web, worker, webhooks and
        # Flower all start at once on a busy machine. Not up yet, like a refused connection.
        except (requests.ConnectionError, requests.Timeout):
            assert time.monotonic() < deadline, f"no answer in {timeout}s: {url}\n{log.read_text()[-6000:]}"
            time.sleep(0.2)


def honcho_children(output: str) -> dict[str, int]:
    """honcho's processes (each the leader of its own process group) by name."""
    return {name: int(pid) for name, pid in re.findall(r"(\w+)\.1 started \(pid=(\d+)\)", output)}


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def still_running(groups: dict[str, int], timeout: float = 20) -> list[str]:
    """The groups left after `timeout`: honcho reports a process stopped when its shell
    ends, while the program in the same group may still be shutting down."""
    deadline = time.monotonic() + timeout
    while (
        alive := [name for name, pgid in groups.items() if group_alive(pgid)]
    ) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


@pytest.fixture
def clone(tmp_path):
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=60)
    (target / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return target


def test_bash_ci_up_from_a_fresh_clone_serves_every_url_the_readme_lists(clone, tmp_path):
    expected = readme_urls((clone / "README.md").read_text())
    assert len(expected) >= 5, expected  # docs, spec, health check, demo page, Flower
    ports = {"PORT": str(free_port()), "FLOWER_PORT": str(free_port())}
    log = tmp_path / "up.log"
    started = time.monotonic()
    up = start_up(clone, up_env(**ports), log)
    try:
        for url, _ in expected:
            get_when_up(rewrite_port(url, ports), up, log)
        answering = time.monotonic() - started

        for url, body in expected:
            response = requests.get(rewrite_port(url, ports), timeout=10)
            assert response.status_code == 200, (url, response.status_code, response.text[:500])
            media_type = response.headers["Content-Type"].split(";")[0]
            if body is not None or url.endswith(".json"):
                assert media_type == "application/json", (url, media_type)
                assert body is None or response.json() == body, (url, response.text)
            else:
                assert media_type == "text/html", (url, media_type)
                assert "<html" in response.text.lower(), url
        assert (clone / "instance" / "app.db").is_file()  # the embedded SQLite database
        stop_up(up, log)
    finally:
        kill_leftovers(up, log)
    print(f"bash .ci/up answered every README URL {answering:.1f}s after it started")


def test_without_port_settings_web_gets_8000_and_flower_5555(clone, tmp_path):
    """The README's ports when PORT and FLOWER_PORT are unset, on this machine only (honcho
    alone would give the web 5000, and HOST unset would listen on every interface). Those
    ports may be taken on this machine, so the clone's Procfile prints what
    its processes would listen on instead of listening: web's bind from gunicorn.conf.py,
    Flower's command line as the Procfile expands it."""
    procfile = dict(line.split(": ", 1) for line in (clone / "Procfile").read_text().splitlines() if line)
    bind = "import runpy; print('web binds', runpy.run_path('gunicorn.conf.py')['bind'], flush=True)"
    (clone / "Procfile").write_text(
        f"release: {procfile['release']}\n"
        f'web: python -c "{bind}" && exec sleep 120\n'
        "worker: exec sleep 120\n"
        "webhooks: exec sleep 120\n"
        f"flower: echo {procfile['flower']} && exec sleep 120\n"
    )
    log = tmp_path / "up.log"
    up = start_up(clone, up_env(), log)
    try:
        wait_for_output(up, log, ["web binds 127.0.0.1:8000", "flower --port=5555 --address=127.0.0.1"])
        stop_up(up, log)
    finally:
        kill_leftovers(up, log)
