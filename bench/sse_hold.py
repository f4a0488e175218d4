"""ONE web process holds many concurrent SSE visitors, mostly idle, while some get replies.

    python bench/sse_hold.py [--visitors 10000] [--active 500] [--tokens 40] [--token-ms 250]
                             [--idle-seconds 20] [--heartbeat 5]

Starts the fake Groq server (replies of --tokens chunks, --token-ms apart), gunicorn with ONE
gevent worker and one Celery gevent worker on PostgreSQL (database bench_sse_hold, recreated)
and Redis (db 12, broker db 13). Raises its own open-file limit (the processes it starts
inherit it). Then:
  1. opens --visitors SSE streams (each a conversation of its own) and waits for each
     `: connected`; measures the web process's RSS before and after: growth per stream;
  2. holds them idle for --idle-seconds: the web process's CPU while idle;
  3. --active of them post a message and read their reply to `message_end` while the rest
     stay idle: tokens lost, delivery latency (entry id time -> received);
throughout: the longest gap between two chunks (events or `: ping`) on any stream, and the
peak number of Redis connections of the web process. Prints a table.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
import requests  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline import (  # noqa: E402
    LOG_DIR,
    pct,
    recreate_database,
    redis_connections_of,
    rss_kb,
    seed_workspace,
    set_fake_default,
    start_fake_groq,
    web_worker_pid,
)
from tests.e2e.harness import base_env, start_web, start_worker  # noqa: E402

DB = "bench_sse_hold"
DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
REDIS_URL = "redis://127.0.0.1:6379/12"
BROKER_URL = "redis://127.0.0.1:6379/13"


def raise_open_file_limit(wanted: int) -> None:
    """Lifts this process's open-file limit (the processes it starts inherit it): the soft
    limit to the hard one, and the hard one too when allowed (root)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return
        except (ValueError, OSError):
            sys.exit(f"the open-file limit ({hard}) is too low: {wanted} are needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stream:
    """One visitor's SSE connection over a raw socket (HTTP/1.1, chunked): light enough
    for ten thousand in one process. Records when every chunk arrived."""

    def __init__(self, host: str, port: int, path: str):
        self.sock = socket.create_connection((host, port), timeout=120)
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        self.file = self.sock.makefile("rb")
        status = self.file.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"stream refused: {status!r}")
        while self.file.readline() not in (b"\r\n", b""):
            pass
        self.last_chunk = time.monotonic()
        self.max_gap = 0.0
        self.first = self._chunk()  # ": connected"
        self.deltas: list[tuple[str, dict]] = []  # (entry id, data) of every delta
        self.ends: list[dict] = []  # data of every message_end
        self.arrivals: list[float] = []  # time.time() at each delta
        self.closed = False
        self.error: str | None = None  # what stopped the reader, if not the connection's end

    def follow(self) -> None:
        """Reads until the connection ends (runs in its own greenlet)."""
        try:
            for entry_id, event, data in self.events():
                if event == "delta":
                    self.arrivals.append(time.time())
                    self.deltas.append((entry_id, data))
                elif event == "message_end":
                    self.ends.append(data)
        except (OSError, EOFError):
            pass
        except Exception as error:  # noqa: BLE001 - reported as the reply's reason, not lost
            self.error = repr(error)
        self.closed = True

    def _chunk(self) -> str:
        size = int(self.file.readline().strip() or b"0", 16)
        if size == 0:
            raise EOFError("stream closed")
        data = self.file.read(size)
        self.file.readline()
        now = time.monotonic()
        self.max_gap = max(self.max_gap, now - self.last_chunk)
        self.last_chunk = now
        return data.decode()

    def events(self):
        """(id, event, data) of each event; comments (pings) only update the gap."""
        while True:
            for block in self._chunk().split("\n\n"):
                if not block or block.startswith(":"):
                    continue
                fields = dict(line.split(": ", 1) for line in block.split("\n"))
                yield fields.get("id"), fields.get("event"), json.loads(fields.get("data", "null"))

    def close(self):
        self.sock.close()


def open_visitor(api: str, handle: str) -> tuple[str, str]:
    body = requests.post(f"{api}/public/conversations", json={"workspace_handle": handle}, timeout=60).json()
    return body["conversation_id"], body["visitor_token"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--visitors", type=int, default=10_000)
    parser.add_argument("--active", type=int, default=500)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--token-ms", type=int, default=250)
    parser.add_argument("--idle-seconds", type=float, default=20)
    parser.add_argument("--heartbeat", type=float, default=5)
    args = parser.parse_args()
    raise_open_file_limit(args.visitors + 1000)  # each process: its sockets plus some

    recreate_database(DB, (REDIS_URL, BROKER_URL))
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as cleanup:
        groq, groq_url = start_fake_groq(args.tokens)
        cleanup.callback(groq.terminate)
        rows = measure(args, groq_url, cleanup)
    width = max(len(label) for label, _ in rows)
    print(f"\n{'measure'.ljust(width)}  result")
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")


def measure(args, groq_url: str, cleanup: contextlib.ExitStack) -> list[tuple[str, str]]:
    set_fake_default(groq_url, {"kind": "tokens", "n": args.tokens, "delay": args.token_ms / 1000})
    env = base_env(
        DATABASE_URL,
        REDIS_URL,
        groq_url,
        CELERY_BROKER_URL=BROKER_URL,
        WORKER_CONCURRENCY="1000",
        WEB_WORKER_CONNECTIONS=str(args.visitors + 1000),
        SSE_HEARTBEAT_SECONDS=str(args.heartbeat),
        SSE_MAX_SECONDS="3600",
    )
    release = subprocess_run(["flask", "--app", "wsgi", "db", "upgrade"], env)
    assert release == 0
    handle = seed_workspace(env)
    web, api_root = start_web(env, LOG_DIR)
    cleanup.callback(web.stop)
    worker = start_worker(env, LOG_DIR)
    cleanup.callback(worker.stop)
    api = f"{api_root}/api/v1"
    web_pid = web_worker_pid(web.proc.pid)
    host, port = "127.0.0.1", int(api_root.rsplit(":", 1)[1])
    pool = gevent.pool.Pool(50)
    visitors = list(pool.imap(lambda _: open_visitor(api, handle), range(args.visitors)))
    peak = {"redis": redis_connections_of(web_pid)}

    def sample():
        while True:
            peak["redis"] = max(peak["redis"], redis_connections_of(web_pid))
            gevent.sleep(1)

    sampler = gevent.spawn(sample)
    rss_before = rss_kb(web_pid)
    cpu_before_open = cpu_seconds(web_pid)
    started = time.perf_counter()
    readers: list[gevent.Greenlet] = []

    def open_stream(visitor: tuple[str, str]) -> Stream:
        cid, token = visitor
        stream = Stream(host, port, f"/api/v1/public/conversations/{cid}/stream?visitor_token={token}")
        readers.append(gevent.spawn(stream.follow))  # read (and time) its pings from now on
        return stream

    streams = list(gevent.pool.Pool(200).imap(open_stream, visitors))
    open_seconds = time.perf_counter() - started
    open_cpu = cpu_seconds(web_pid) - cpu_before_open
    assert all(s.first == ": connected\n\n" for s in streams)
    gevent.sleep(2)
    rss_after = rss_kb(web_pid)

    cpu0, t0 = cpu_seconds(web_pid), time.monotonic()
    gevent.sleep(args.idle_seconds)
    idle_cpu_pct = 100 * (cpu_seconds(web_pid) - cpu0) / (time.monotonic() - t0)

    result = run_replies(api, visitors[: args.active], streams[: args.active], args.tokens)
    sampler.kill()
    max_gap = max(s.max_gap for s in streams)
    gevent.killall(readers)

    n = args.visitors
    rows = [
        ("SSE streams held by one web process", f"{n:,}"),
        ("opening them: wall s / web CPU ms per stream", f"{open_seconds:.1f} / {1000 * open_cpu / n:.2f}"),
        ("web RSS before / after opening, MB", f"{rss_before / 1024:.0f} / {rss_after / 1024:.0f}"),
        ("RSS growth per idle stream, KB", f"{(rss_after - rss_before) / n:.1f}"),
        (f"web CPU while {n:,} streams idle, % of a core", f"{idle_cpu_pct:.1f}"),
        ("Redis connections of the web process (peak)", str(peak["redis"])),
        (
            f"replies to {args.active} visitors: complete / tokens lost",
            f"{result['complete']} / {result['lost']}",
        ),
        ("incomplete replies, by what was wrong", result["reasons"]),
        ("delivery p50 / p99 ms (entry written -> received)", f"{result['p50']:.0f} / {result['p99']:.0f}"),
        (f"longest gap between chunks on any stream, s (heartbeat {args.heartbeat:g} s)", f"{max_gap:.2f}"),
    ]
    return rows


def run_replies(api: str, visitors: list[tuple[str, str]], streams: list[Stream], tokens: int) -> dict:
    run_ids: list[str | None] = [None] * len(visitors)

    def post(i: int) -> None:
        cid, token = visitors[i]
        response = requests.post(
            f"{api}/public/conversations/{cid}/messages",
            json={"content": f"visitor {i}", "idempotency_key": str(uuid.uuid4())},
            headers={"X-Visitor-Token": token},
            timeout=60,
        )
        assert response.status_code == 201, response.text
        run_ids[i] = response.json()["run"]["id"]

    gevent.joinall([gevent.spawn(post, i) for i in range(len(visitors))], raise_error=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not all(stream.ends for stream in streams):
        gevent.sleep(0.2)
    latencies, complete, received = [], 0, 0
    reasons: dict[str, int] = {}  # why a reply is counted incomplete: how many
    for stream, run_id in zip(streams, run_ids, strict=True):
        mine = [
            (entry_id, data, at) for (entry_id, data), at in zip(stream.deltas, stream.arrivals, strict=True)
        ]
        mine = [item for item in mine if item[1]["run_id"] == run_id]
        received += len(mine)
        latencies += [1000 * at - int(entry_id.split("-")[0]) for entry_id, _, at in mine]
        text = "".join(data["text_chunk"] for _, data, _ in mine)
        ends = [end for end in stream.ends if end["run_id"] == run_id]
        ok = bool(ends) and ends[0]["full_text"] == text and len(mine) == tokens
        if not ok:
            reason = (
                f"reader failed: {stream.error}"
                if stream.error
                else "stream closed early"
                if stream.closed
                else "no message_end"
                if not ends
                else f"{len(mine)} deltas"
                if len(mine) != tokens
                else f"full_text differs ({ends[0].get('status')})"
            )
            reasons[reason] = reasons.get(reason, 0) + 1
        if not ok and os.environ.get("SSE_HOLD_DEBUG"):
            print(
                f"run {run_id}: {len(mine)} deltas, {len(ends)} message_end, text matches: "
                f"{bool(ends) and ends[0]['full_text'] == text}, open: {not stream.closed}, "
                f"all deltas on the stream: {len(stream.deltas)}, their runs: "
                f"{sorted({data['run_id'] for _, data in stream.deltas})}, "
                f"ends: {[(end['run_id'], end.get('status')) for end in stream.ends]}"
            )
        complete += ok
    return {
        "complete": complete,
        "reasons": ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items())) or "none",
        "lost": len(visitors) * tokens - received,
        "p50": pct(latencies, 50) if latencies else float("nan"),
        "p99": pct(latencies, 99) if latencies else float("nan"),
    }


def subprocess_run(command: list[str], env: dict) -> int:
    return subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL).returncode


if __name__ == "__main__":
    main()
