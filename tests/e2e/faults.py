"""What the fault tests break: a private redis-server and a private PostgreSQL cluster they
can stop and start (never the machine's shared ones), a TCP proxy that delays or cuts
connections, a web + worker pair wired to them, and a visitor that reconnects the way a
browser's EventSource does (with Last-Event-ID) until its reply ends or it is told to resync."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

import redis
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.e2e.harness import VENV_BIN, base_env, start_web, start_worker
from tests.helpers import free_port

LOG_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e-logs"


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


class RedisServer:
    """A redis-server without persistence on a free port: a restart comes back empty."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            + ["--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        _wait(answers, 10, "redis-server did not start")

    def crash(self) -> None:
        """SIGKILL: whatever it held is gone, as with a restart without persistence."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class PostgresCluster:
    """A PostgreSQL cluster made with initdb in a temp dir, run as the postgres user (initdb
    refuses root), trust auth on 127.0.0.1, fsync off: only for tests."""

    def __init__(self):
        bins = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise RuntimeError("no initdb under /usr/lib/postgresql/*/bin")
        self.bin = Path(bins[-1]).parent
        # Its own directory under /tmp: pytest's tmp_path is private to root, and the
        # server runs as the postgres user (initdb refuses root).
        self.dir = Path(tempfile.mkdtemp(prefix="faults-pg-"))
        self.dir.chmod(0o755)
        self.data = self.dir / "data"
        self.port = free_port()
        self._as_user = [] if os.getuid() != 0 else ["runuser", "-u", "postgres", "--"]
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as_user, str(self.bin / tool), *args], check=True, capture_output=True, timeout=60
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "pg.log"), "-w", "start"
        )

    def stop(self) -> None:
        """A fast shutdown: every connection is cut, as in a restart or failover."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)


class Proxy:
    """A TCP proxy (an asyncio loop in a thread) in front of `target_port`. `delay` seconds
    are added to every chunk, each way, keeping order; `cut()` drops every connection and
    refuses new ones until `restore()`."""

    def __init__(self, target_port: int, delay: float = 0.0):
        self.target_port = target_port
        self.port = free_port()
        self.delay = delay
        self._cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True, name="fault-proxy").start()
        started.wait(10)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        started.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunks: asyncio.Queue = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await chunks.get()
                if data is None:
                    break
                if (wait := due - self._loop.time()) > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        try:
            while data := await reader.read(65536):
                chunks.put_nowait((self._loop.time() + self.delay, data))
            chunks.put_nowait((0, None))
            await sender
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            writer.transport.abort()

    def cut(self) -> None:
        def drop_all() -> None:
            self._cut = True
            for writer in list(self._writers):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(drop_all)
        time.sleep(0.1)

    def restore(self) -> None:
        self._cut = False

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)


class FaultStack:
    """gunicorn (gevent) + a Celery worker, as the Procfile starts them, on the given
    database and Redis; duck-typed like the shared `stack` for tests.e2e.chat.Visitor."""

    def __init__(
        self, groq_url: str, database_url: str, redis_url: str, broker_url: str | None = None, **env
    ):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url
        self.env = base_env(
            database_url, redis_url, groq_url, CELERY_BROKER_URL=broker_url or redis_url, **env
        )
        self.web, self.url = start_web(self.env, LOG_DIR)
        self.worker = start_worker(self.env, LOG_DIR)
        self._engine = create_engine(make_url(database_url).set(drivername="postgresql+psycopg2"))

    def api(self, path: str) -> str:
        return f"{self.url}/api/v1{path}"

    def health(self) -> requests.Response:
        return requests.get(self.api("/utils/health-check/"), timeout=30)

    def runs(self) -> list[tuple[str, str]]:
        with self._engine.connect() as conn:
            return [(str(r.id), r.status) for r in conn.execute(text("SELECT id, status FROM agent_runs"))]

    def replies_per_run(self) -> dict[str, int]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT run_id, count(*) AS n FROM conversation_messages"
                    " WHERE role = 'assistant' GROUP BY run_id"
                )
            )
            return {str(r.run_id): r.n for r in rows}

    def wait_all_finished(self, timeout: float) -> float:
        """Seconds until no run is queued or running."""
        started = time.monotonic()
        _wait(
            lambda: all(status not in ("queued", "running") for _, status in self.runs()),
            timeout,
            f"runs still unfinished after {timeout}s: {self.runs()}",
        )
        return time.monotonic() - started

    def stop(self) -> None:
        self.worker.stop()
        self.web.stop()
        self._engine.dispose()


def migrate_and_seed(database_url: str) -> str:
    """Schema and the demo workspace in a fresh database; returns its handle."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "local",
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
    }
    env["SECRET_KEY"] = "e2e-secret-key-0123456789abcdef0123456789"
    root = Path(__file__).resolve().parents[2]
    for command in (["db", "upgrade"], ["seed"]):
        subprocess.run(
            ["flask", "--app", "wsgi", *command],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    return "demo"


@dataclass
class Followed:
    """What one visitor saw of a run, across reconnects."""

    events: list = field(default_factory=list)
    reconnects: int = 0
    refused: int = 0  # stream requests answered with an error while a dependency was down
    end: dict | None = None
    resync: bool = False
    error: str | None = None


def follow(visitor, cursor: str | None, run_id: str, timeout: float) -> Followed:
    """Reads the visitor's stream until `run_id`'s message_end or a `resync`, reconnecting
    with the last id seen whenever the stream ends or breaks (an EventSource, plus a retry
    after an error answer)."""
    seen = Followed()
    last = cursor
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stream = visitor.stream(last, header=True, timeout=10)
        except requests.RequestException:
            seen.refused += 1
            time.sleep(0.3)
            continue
        if stream.response.status_code != 200:
            seen.refused += 1
            stream.close()
            time.sleep(0.3)
            continue
        try:
            for event in stream:
                if event.event == ":comment":
                    if time.monotonic() > deadline:
                        break
                    continue
                seen.events.append(event)
                last = event.id or last
                if event.event == "resync":
                    seen.resync = True
                    return seen
                if event.event == "message_end" and event.data["run_id"] == run_id:
                    seen.end = event.data
                    return seen
        except requests.RequestException:
            pass
        finally:
            stream.close()
        seen.reconnects += 1
    seen.error = f"no message_end or resync within {timeout}s"
    return seen


def follow_in_thread(visitor, cursor: str | None, run_id: str, timeout: float):
    """Starts `follow` in a thread; call the result to join it and get what it saw."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(seen=follow(visitor, cursor, run_id, timeout)))
    thread.start()

    def result() -> Followed:
        thread.join(timeout + 30)
        return box["seen"]

    return result


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (gunicorn's workers under its master)."""
    children = []
    for stat in glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(Path(stat).parent.name))
    return children


class PeakRSS:
    """Samples a process's resident memory every 50 ms until stopped; `peak` in MiB."""

    def __init__(self, pid: int):
        self.pid, self.start, self.peak = pid, process_rss_mb(pid), 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, process_rss_mb(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def open_raw_stream(base_url: str, path: str, params: str, rcvbuf: int | None = None) -> socket.socket:
    """An SSE request on a raw socket (cheap enough for 50 readers in one test process);
    `rcvbuf` shrinks its receive buffer, for a client that will never read."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, int(port)))
    request = f"GET {path}?{params} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
    sock.sendall(request.encode())
    return sock


def read_raw_stream(sock: socket.socket, timeout: float, connected: threading.Event | None = None) -> dict:
    """Reads SSE from a raw socket until a message_end: each entry's delivery latency (now
    minus the time Redis gave it, in its id), the ids seen, whether the server closed."""
    sock.settimeout(timeout)
    latencies: list[float] = []
    ids: list[str] = []
    buffered = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 16)
        except TimeoutError:
            break
        if not data:
            return {"latencies": latencies, "ids": ids, "closed": True, "ended": False}
        now = time.time()
        lines = (buffered + data).split(b"\n")
        buffered = lines.pop()
        for line in lines:
            line = line.rstrip(b"\r")
            if line.startswith(b"id: "):
                ids.append(line[4:].decode())
                latencies.append(now - int(line[4:].split(b"-")[0]) / 1000)
            elif line == b": connected" and connected is not None:
                connected.set()
            elif line == b"event: message_end":
                return {"latencies": latencies, "ids": ids, "closed": False, "ended": True}
    return {"latencies": latencies, "ids": ids, "closed": False, "ended": False}
