"""Real processes for end-to-end tests: gunicorn (gevent) serving wsgi:app and a
Celery worker (gevent pool), started from the Procfile's commands, plus an SSE
client that parses the event stream the way a browser's EventSource does."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from backend.config import TestConfig
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# The processes hash passwords at the tests' cost too (argon2's defaults take ~0.1 s a hash).
PASSWORD_HASH_ENV = {
    name: str(getattr(TestConfig, name))
    for name in ("PASSWORD_HASH_TIME_COST", "PASSWORD_HASH_MEMORY_COST", "PASSWORD_HASH_PARALLELISM")
}


# Celery logs "Task <name>[<id>] received" when a worker takes a task, then the same
# prefix with "succeeded", "raised", "failed", "retry"... when it is done with it.
TASK_LINE = re.compile(r"Task [\w.]+\[([0-9a-f-]{36})\] (\w+)")


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return command.strip()
    raise KeyError(name)


class Process:
    """A Procfile entry running as a real process group, with its output in a log file."""

    def __init__(self, name: str, env: dict, log_dir: Path, command: str | None = None):
        self.name = name
        self.log_path = log_dir / f"{name}-{int(time.time() * 1000)}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self._parsed_upto = 0
        self._unfinished: set[str] = set()
        self.proc = subprocess.Popen(
            ["bash", "-c", "exec " + (command or procfile_command(name))],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.output()[-4000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not print {text!r}:\n{self.output()[-4000:]}")

    def unfinished_tasks(self) -> set[str]:
        """Ids of the Celery tasks this process logged as received and not yet as done."""
        with open(self.log_path, "rb") as log:
            log.seek(self._parsed_upto)
            chunk = log.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
        self._parsed_upto += len(complete)
        for task_id, word in TASK_LINE.findall(complete.decode(errors="replace")):
            if word == "received":
                self._unfinished.add(task_id)
            else:
                self._unfinished.discard(task_id)
        return set(self._unfinished)

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self._log.close()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def base_env(database_url: str, redis_url: str, groq_base_url: str | None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GROQ_", "DATABASE_", "REDIS_"))}
    env.update(
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        SECRET_KEY="e2e-secret-key-0123456789abcdef0123456789",
        ENVIRONMENT="local",
        RATELIMIT_ENABLED="false",
        WEB_CONCURRENCY="1",
        WORKER_CONCURRENCY="50",
        LOG_LEVEL="INFO",
        GROQ_API_KEY="test-key",
        GROQ_RETRY_BACKOFF_SECONDS="0.05",
        SSE_HEARTBEAT_SECONDS="1",
        SSE_MAX_SECONDS="60",
        RUN_HEARTBEAT_SECONDS="1",
        RUN_STALE_SECONDS="5",
        RUN_RECOVERY_INTERVAL_SECONDS="1",
        PYTHONUNBUFFERED="1",
        **PASSWORD_HASH_ENV,
    )
    if groq_base_url:
        env["GROQ_BASE_URL"] = groq_base_url
    env.update({k: str(v) for k, v in extra.items() if v is not None})
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
    return env


def start_web(env: dict, log_dir: Path, port: int | None = None) -> tuple[Process, str]:
    port = port or free_port()
    web = Process("web", {**env, "PORT": str(port), "HOST": "127.0.0.1"}, log_dir)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/api/v1/utils/health-check/", timeout=1).status_code == 200:
                return web, url
        except requests.RequestException:
            pass
        if web.proc.poll() is not None:
            break
        time.sleep(0.1)
    web.kill()
    raise RuntimeError(f"web did not become healthy:\n{web.output()[-4000:]}")


def start_worker(env: dict, log_dir: Path, name: str = "worker") -> Process:
    command = procfile_command("worker").replace("worker@%h", f"{name}-{free_port()}@%h")
    worker = Process("worker", env, log_dir, command=command)
    worker.wait_for_output("ready.", timeout=40)
    return worker


@dataclass
class Event:
    id: str | None
    event: str
    data: dict | str | None


class SSEClient:
    """Reads `text/event-stream` line by line (comments are kept as event ':comment')."""

    def __init__(self, url: str, params: dict | None = None, headers: dict | None = None, timeout=10):
        self.response = requests.get(url, params=params, headers=headers, stream=True, timeout=timeout)
        self._lines = self.response.iter_lines(decode_unicode=True)

    def __iter__(self):
        current: dict = {}
        for line in self._lines:
            if line == "":
                if current:
                    data = current.get("data")
                    try:
                        data = json.loads(data) if data is not None else None
                    except ValueError:
                        pass
                    yield Event(current.get("id"), current.get("event", "message"), data)
                    current = {}
                continue
            if line.startswith(":"):
                yield Event(None, ":comment", line[1:].strip())
                continue
            field, _, value = line.partition(":")
            current[field] = value[1:] if value.startswith(" ") else value

    def events_until(self, predicate, limit: int = 100_000, timeout: float = 30) -> list[Event]:
        """Collects events (comments excluded) up to and including the first that matches.

        Gives up after `timeout` seconds (checked whenever a line arrives; the server's
        heartbeats make that at least once per SSE_HEARTBEAT_SECONDS)."""
        out = []
        deadline = time.monotonic() + timeout
        for event in self:
            if event.event != ":comment":
                out.append(event)
                if predicate(event) or len(out) >= limit:
                    return out
            if time.monotonic() > deadline:
                break
        raise TimeoutError(f"no matching event within {timeout}s; got {[(e.event, e.data) for e in out]}")

    def until_comment(self, text: str, timeout: float = 30) -> list[Event]:
        """Everything (comments included) up to and including the first comment `text`."""
        out = []
        deadline = time.monotonic() + timeout
        for event in self:
            out.append(event)
            if event.event == ":comment" and event.data == text:
                return out
            if time.monotonic() > deadline:
                break
        raise TimeoutError(f"no ': {text}' within {timeout}s; got {[(e.event, e.data) for e in out]}")

    def close(self) -> None:
        self.response.close()


def shell_quote_env(env: dict) -> str:
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
