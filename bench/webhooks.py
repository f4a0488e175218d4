"""Benchmark of webhooks with real processes: gunicorn (one gevent worker) records the
events, the Procfile's `webhooks` Celery worker (one gevent process) delivers them to a fast
local receiver (gevent WSGI, in this process); the Procfile's `worker` runs agent runs.

    python bench/webhooks.py [--events 1000] [--samples 300] [--runs 50]

PostgreSQL database bench_webhooks (recreated), Redis db 12, broker db 13. No LLM: runs
answer in degraded mode, which is enough to time how long they wait in the agent queue.
Prints a table of:
  (a) deliveries/s of one webhooks worker: N events queued before it starts, then drained;
  (b) the cost of the event-causing request: an owner's POST message, p50/p99, with no
      webhook and with one (its outbox row written in the request's transaction);
  (c) the agent queue's wait (run created -> started) of runs started one every 0.1 s,
      p50/p99, with no deliveries and while the webhooks worker drains the backlog.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
import psycopg2  # noqa: E402
import requests  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline import Visitor, pct, recreate_database, seed_workspace  # noqa: E402
from tests.e2e.harness import Process, base_env, procfile_command, start_web, start_worker  # noqa: E402

DB = "bench_webhooks"
DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
REDIS_URL = "redis://127.0.0.1:6379/12"
BROKER_URL = "redis://127.0.0.1:6379/13"
LOG_DIR = ROOT / "test-artifacts" / "bench-logs"


class FastReceiver:
    """Answers 200 at once; keeps the arrival time of every delivery."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.server = WSGIServer(("127.0.0.1", 0), self.app, log=None)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"

    def app(self, environ, start_response):
        environ["wsgi.input"].read()
        self.times.append(time.perf_counter())
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    def wait_for(self, count: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while len(self.times) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"received {len(self.times)} of {count}")
            gevent.sleep(0.01)


class Owner:
    def __init__(self, api: str, handle: str) -> None:
        self.api = api
        self.http = requests.Session()
        token = self.http.post(
            f"{api}/login/access-token",
            data={"username": f"{handle}@example.com", "password": "x" * 12},
            timeout=30,
        ).json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.workspace_id = self.http.get(f"{api}/workspaces/me", timeout=30).json()["id"]
        created = self.http.post(
            f"{api}/conversations/workspaces/{self.workspace_id}", json={"visitor_name": "Bench"}, timeout=30
        )
        self.conversation_id = created.json()["id"]

    def post_message(self, n: int) -> float:
        started = time.perf_counter()
        response = self.http.post(
            f"{self.api}/conversations/{self.conversation_id}/messages",
            json={"role": "owner", "content": f"message {n}"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return (time.perf_counter() - started) * 1000

    def subscribe(self, url: str) -> None:
        response = self.http.post(
            f"{self.api}/workspaces/{self.workspace_id}/webhooks",
            json={"url": url, "events": ["message.created"]},
            timeout=30,
        )
        assert response.status_code == 201, response.text


def post_many(owner: Owner, count: int, concurrency: int = 20) -> None:
    pool = gevent.pool.Pool(concurrency)
    for n in range(count):
        pool.spawn(owner.post_message, n)
    pool.join(raise_error=True)


def run_waits(since: float, count: int, timeout: float = 300) -> list[float]:
    """Queue waits (ms) of the `count` runs created after `since` (epoch), once all started."""
    deadline = time.monotonic() + timeout
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=DB)
    conn.autocommit = True
    try:
        while True:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT EXTRACT(EPOCH FROM started_at - created_at) * 1000 FROM agent_runs "
                    "WHERE created_at >= to_timestamp(%s) AND started_at IS NOT NULL",
                    (since,),
                )
                waits = [float(row[0]) for row in cur.fetchall()]
            if len(waits) >= count:
                return waits
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(waits)} of {count} runs started")
            gevent.sleep(0.1)
    finally:
        conn.close()


def visitors_post(api: str, handle: str, count: int, gap: float = 0.1) -> float:
    """`count` visitor messages, one every `gap` seconds (each starts a run); returns when
    the first was sent (epoch)."""
    visitors = [Visitor(api, handle) for _ in range(count)]
    since = time.time()
    for visitor in visitors:
        visitor.post("When are you open?")
        gevent.sleep(gap)
    return since


def start_webhooks_worker(env: dict) -> Process:
    worker = Process(
        "webhooks", env, LOG_DIR, command=procfile_command("webhooks") + " --without-gossip --without-mingle"
    )
    worker.wait_for_output("ready.", timeout=60)
    return worker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    recreate_database(DB, (REDIS_URL, BROKER_URL))
    env = base_env(
        DATABASE_URL,
        REDIS_URL,
        None,
        CELERY_BROKER_URL=BROKER_URL,
        GROQ_API_KEY=None,
        LOG_LEVEL="INFO",
        WORKER_CONCURRENCY="200",
        WEBHOOK_ALLOW_PRIVATE="true",
        WEBHOOK_ALLOW_HTTP="true",
    )
    subprocess.run(
        ["flask", "--app", "wsgi", "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True
    )
    hooked_handle, chat_handle = seed_workspace(env), seed_workspace(env)
    receiver = FastReceiver()
    processes = []
    try:
        web, url = start_web(env, LOG_DIR)
        processes += [web, start_worker(env, LOG_DIR)]
        api = f"{url}/api/v1"
        owner = Owner(api, hooked_handle)
        for n in range(20):  # warm-up
            owner.post_message(n)
        idle_waits = run_waits(visitors_post(api, chat_handle, args.runs), args.runs)
        # (b) with no webhooks worker running: the request's own cost, nothing else on the CPU.
        without = [owner.post_message(n) for n in range(args.samples)]
        owner.subscribe(receiver.url)
        with_hook = [owner.post_message(n) for n in range(args.samples)]
        post_many(owner, args.events - args.samples)
        # (a) and (c): one webhooks worker drains the queued deliveries while runs are posted.
        drain_started = time.perf_counter()
        processes.append(start_webhooks_worker(env))
        ready = time.perf_counter()
        busy = gevent.spawn(visitors_post, api, chat_handle, args.runs)
        receiver.wait_for(args.events)
        busy_since = busy.get()
        drained_in = receiver.times[-1] - ready
        busy_waits = run_waits(busy_since, args.runs)
    finally:
        for process in processes:
            process.stop()
    rows = [
        (f"(a) {args.events} queued deliveries drained by one webhooks worker in", f"{drained_in:.2f} s"),
        ("(a) deliveries/s (worker ready -> last received)", f"{args.events / drained_in:.0f}"),
        ("(a) worker start (process -> ready)", f"{ready - drain_started:.1f} s"),
        (
            f"(b) owner POST message p50 / p99, no webhook ({args.samples})",
            f"{statistics.median(without):.1f} ms / {pct(without, 99):.1f} ms",
        ),
        (
            f"(b) owner POST message p50 / p99, one webhook ({args.samples})",
            f"{statistics.median(with_hook):.1f} ms / {pct(with_hook, 99):.1f} ms",
        ),
        (
            f"(c) agent queue wait p50 / p99, no deliveries ({args.runs} runs)",
            f"{statistics.median(idle_waits):.1f} ms / {pct(idle_waits, 99):.1f} ms",
        ),
        (
            f"(c) agent queue wait p50 / p99, during the {args.events}-delivery drain",
            f"{statistics.median(busy_waits):.1f} ms / {pct(busy_waits, 99):.1f} ms",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
