"""Benchmark of the run pipeline with real processes and the fake LLM at zero delay.

    python bench/pipeline.py [--runs 200] [--visitors 500] [--tokens 5000]

Starts the fake Groq server (its own process), gunicorn with ONE gevent worker and
one Celery gevent worker on PostgreSQL (database bench_pipeline, recreated) and
Redis (db 10, broker db 11), then measures and prints a table of:
  (a) POST message -> first `delta` at the visitor, p50/p99 over N sequential runs;
  (b) V concurrent SSE visitors tailing live runs on one web worker: events lost,
      delivery latency p50/p99 (entry id time -> received), Redis connections, web RSS;
  (c) tokens/s through one run of T tokens (message_start -> message_end at the visitor).
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import psycopg2  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import SSEClient, base_env, start_web, start_worker  # noqa: E402

DB = "bench_pipeline"
DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
REDIS_URL = "redis://127.0.0.1:6379/10"
BROKER_URL = "redis://127.0.0.1:6379/11"
LOG_DIR = ROOT / "test-artifacts" / "bench-logs"


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def recreate_database(db: str = DB, redis_urls: tuple[str, ...] = (REDIS_URL, BROKER_URL)) -> None:
    """A fresh PostgreSQL database `db` and empty Redis databases for a bench run."""
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{db}"')
    conn.close()
    for url in redis_urls:
        redis.Redis.from_url(url).flushdb()


def start_fake_groq(tokens: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "fake_groq.py"),
            "--port",
            "0",
            "--tokens",
            str(tokens),
            "--delay",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    port = proc.stdout.readline().split()[1]
    return proc, f"http://127.0.0.1:{port}"


def set_fake_default(groq_url: str, spec: dict) -> None:
    requests.post(f"{groq_url}/_control/default", json=spec, timeout=5).raise_for_status()


def seed_workspace(env: dict) -> str:
    handle = f"bench-{uuid.uuid4().hex[:8]}"
    code = (
        "from backend import create_app\n"
        "from backend.extensions import db\n"
        "from backend.models import User, Workspace\n"
        "from backend.security import hash_password\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        f"    u = User(email='{handle}@example.com', hashed_password=hash_password('x' * 12),"
        " is_active=True, is_superuser=False, social_links={})\n"
        "    db.session.add(u); db.session.flush()\n"
        f"    db.session.add(Workspace(owner_id=u.id, handle='{handle}', name='Bench', type='individual',"
        " tone='friendly', timezone='UTC', is_active=True)); db.session.commit()\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True)
    return handle


class Visitor:
    def __init__(self, api: str, handle: str):
        self.api = api
        self.http = requests.Session()  # keep-alive, as a browser does
        body = self.http.post(
            f"{api}/public/conversations", json={"workspace_handle": handle}, timeout=30
        ).json()
        self.cid, self.token = body["conversation_id"], body["visitor_token"]

    def stream(self) -> SSEClient:
        client = SSEClient(
            f"{self.api}/public/conversations/{self.cid}/stream",
            params={"visitor_token": self.token},
            timeout=120,
        )
        first = next(iter(client))  # ": connected": the hub now watches this stream
        assert first.event == ":comment", first
        return client

    def post(self, content: str) -> dict:
        response = self.http.post(
            f"{self.api}/public/conversations/{self.cid}/messages",
            json={"content": content, "idempotency_key": str(uuid.uuid4())},
            headers={"X-Visitor-Token": self.token},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return response.json()


def bench_first_delta(api: str, handle: str, runs: int) -> list[float]:
    latencies = []
    for i in range(runs):
        visitor = Visitor(api, handle)
        client = visitor.stream()
        started = time.perf_counter()
        run_id = visitor.post(f"hello {i}")["run"]["id"]
        for event in client:
            if event.event == "delta" and event.data["run_id"] == run_id:
                latencies.append((time.perf_counter() - started) * 1000)
                break
        for event in client:  # let the run finish before the next one starts
            if event.event == "message_end":
                break
        client.close()
    return latencies


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def web_worker_pid(master_pid: int) -> int:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return int(children[0])


def redis_connections_of(pid: int) -> int:
    out = subprocess.run(["ss", "-tnp"], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if ":6379" in line and f"pid={pid}," in line)


def bench_fanout(api: str, handle: str, visitors: int, tokens: int, web_pid: int) -> dict:
    people = [Visitor(api, handle) for _ in range(visitors)]
    clients = [None] * visitors
    jobs = [gevent.spawn(lambda i=i: clients.__setitem__(i, people[i].stream())) for i in range(visitors)]
    gevent.joinall(jobs, raise_error=True)
    latencies, counts, texts, ends = [], [0] * visitors, [""] * visitors, [None] * visitors

    def read(i):
        for event in clients[i]:
            if event.event == "delta":
                latencies.append(time.time() * 1000 - int(event.id.split("-")[0]))
                counts[i] += 1
                texts[i] += event.data["text_chunk"]
            elif event.event == "message_end":
                ends[i] = event.data
                return

    readers = [gevent.spawn(read, i) for i in range(visitors)]
    peak = {"redis": 0}

    def sample():
        while True:
            peak["redis"] = max(peak["redis"], redis_connections_of(web_pid))
            gevent.sleep(0.5)

    sampler = gevent.spawn(sample)
    started = time.perf_counter()
    posters = [gevent.spawn(people[i].post, f"visitor {i}") for i in range(visitors)]
    gevent.joinall(posters, raise_error=True)
    gevent.joinall(readers, timeout=300)
    elapsed = time.perf_counter() - started
    sampler.kill()
    rss = rss_kb(web_pid)
    for client in clients:
        client.close()
    complete = sum(
        1 for i in range(visitors) if ends[i] and ends[i]["full_text"] == texts[i] and counts[i] == tokens
    )
    return {
        "visitors": visitors,
        "complete": complete,
        "events": sum(counts),
        "elapsed": elapsed,
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "redis": peak["redis"],
        "rss_mb": rss / 1024,
    }


def bench_throughput(api: str, handle: str, tokens: int) -> tuple[float, int]:
    visitor = Visitor(api, handle)
    client = visitor.stream()
    visitor.post("a long answer please")
    count, started = 0, None
    for event in client:
        if event.event == "message_start":
            started = time.perf_counter()
        elif event.event == "delta":
            count += 1
        elif event.event == "message_end":
            elapsed = time.perf_counter() - started
            client.close()
            return count / elapsed, count
    raise RuntimeError("stream ended early")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--visitors", type=int, default=500)
    parser.add_argument("--fanout-tokens", type=int, default=20)
    parser.add_argument("--fanout-delay", type=float, default=0.05)
    parser.add_argument("--tokens", type=int, default=5000)
    args = parser.parse_args()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    recreate_database()
    groq_proc, groq_url = start_fake_groq(20)
    env = base_env(
        DATABASE_URL,
        REDIS_URL,
        groq_url,
        CELERY_BROKER_URL=BROKER_URL,
        LOG_LEVEL="INFO",
        WORKER_CONCURRENCY="500",
        SSE_HEARTBEAT_SECONDS="15",
        SSE_MAX_SECONDS="600",
        WEB_WORKER_CONNECTIONS="4000",
        RUN_STALE_SECONDS="60",
    )
    subprocess.run(
        ["flask", "--app", "wsgi", "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True
    )
    handle = seed_workspace(env)
    processes = []
    try:
        web, url = start_web(env, LOG_DIR)
        processes.append(web)
        processes.append(start_worker(env, LOG_DIR))
        api = f"{url}/api/v1"
        web_pid = web_worker_pid(web.proc.pid)
        set_fake_default(groq_url, {"kind": "tokens", "n": 20})
        bench_first_delta(api, handle, 10)  # warm-up
        first = bench_first_delta(api, handle, args.runs)
        set_fake_default(groq_url, {"kind": "tokens", "n": args.fanout_tokens, "delay": args.fanout_delay})
        fan = bench_fanout(api, handle, args.visitors, args.fanout_tokens, web_pid)
        set_fake_default(groq_url, {"kind": "tokens", "n": args.tokens})
        bench_throughput(api, handle, 200)  # warm-up
        rates = [bench_throughput(api, handle, args.tokens)[0] for _ in range(3)]
    finally:
        for process in processes:
            process.stop()
        groq_proc.terminate()
    rows = [
        (
            f"(a) POST -> first delta, p50 / p99 ({len(first)} runs)",
            f"{statistics.median(first):.1f} ms / {pct(first, 99):.1f} ms",
        ),
        ("(b) SSE visitors on one web worker, runs complete", f"{fan['complete']} / {fan['visitors']}"),
        (f"(b) delta events delivered ({args.fanout_tokens} tokens each)", str(fan["events"])),
        ("(b) delivery latency p50 / p99", f"{fan['p50']:.1f} ms / {fan['p99']:.1f} ms"),
        ("(b) Redis connections of the web worker (peak)", str(fan["redis"])),
        ("(b) web worker RSS after the fan-out", f"{fan['rss_mb']:.1f} MB"),
        ("(b) all runs done in", f"{fan['elapsed']:.1f} s"),
        (
            f"(c) tokens/s through one run of {args.tokens} tokens (median of 3)",
            f"{statistics.median(rates):.0f}",
        ),
    ]
    print(f"\n{'measure':<64} {'result':>24}\n" + "-" * 89)
    for name, value in rows:
        print(f"{name:<64} {value:>24}")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
