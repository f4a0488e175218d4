"""Prints what bench/profile_burst.sh collected: CPU per reply by process, SQL statements and
Redis commands per reply, and the top frames py-spy saw in the web and the worker.

    python bench/profile_report.py OUT_DIR REPLIES
    python bench/profile_report.py --cpu-of-tree PID   (CPU seconds of PID and its children,
                                                         the exited ones included)
"""

import json
import os
import sys
from collections import Counter
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
OWN_CODE = ("backend/", "celery_app", "wsgi")


def cpu_of_tree(pid: int) -> float:
    """utime+stime of `pid`, of its reaped children, and of its live children."""

    def fields(p: int) -> list[str]:
        raw = Path(f"/proc/{p}/stat").read_text()
        return raw[raw.rindex(")") + 2 :].split()

    own = fields(pid)
    total = sum(int(v) for v in own[11:15])  # utime stime cutime cstime
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            total += sum(int(v) for v in fields(int(child))[11:13])
        except FileNotFoundError:
            pass
    return total / TICK


def frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def top_frames(folded: Path, limit: int = 18) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    total, inclusive, own = 0, Counter(), Counter()
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";")]
        total += n
        for name in set(frames):
            if any(mark in name for mark in OWN_CODE):
                inclusive[name] += n
        own[frames[-1]] += n
    return total, inclusive.most_common(limit), own.most_common(limit)


def report(out: Path, replies: int) -> None:
    load = json.loads((out / "load.json").read_text())
    print(
        f"### {load['scenario']}: {load['ok']}/{load['count']} replies, lost/dup {load['lost']}/{load['dup']}"
    )
    ttft, delivery = load["ttft_ms"], load["lat_ms"]
    print(f"TTFT p50 / p99 ms: {ttft['p50']:.0f} / {ttft['p99']:.0f}; delivery p99 ms: {delivery['p99']:.0f}")
    pg = float((out / "pg-cpu-after").read_text()) - float((out / "pg-cpu-before").read_text())
    server = load["server"]
    rows = [(name, stats["cpu_s"]) for name, stats in server.items()]
    rows += [("postgresql", pg), ("redis", load["redis"]["cpu_s"])]
    print("\n| process | CPU s | ms per reply |\n|---|---|---|")
    for name, cpu in rows:
        print(f"| {name} | {cpu:.1f} | {cpu / replies * 1000:.1f} |")
    total = sum(cpu for _, cpu in rows)
    print(f"| **all** | {total:.1f} | {total / replies * 1000:.1f} |")

    statements = [line.split("\t") for line in (out / "pg-statements.tsv").read_text().splitlines() if line]
    calls = sum(int(s[0]) for s in statements)
    sessions = int((out / "pg-sessions-after").read_text()) - int((out / "pg-sessions-before").read_text())
    print(f"\nPostgreSQL sessions opened during the load: {sessions} ({sessions / replies:.2f} per reply)")
    print(f"\nSQL statements: {calls} ({calls / replies:.1f} per reply); the most frequent:")
    print("\n| calls per reply | total ms | statement |\n|---|---|---|")
    for count, ms, query in statements[:14]:
        print(f"| {int(count) / replies:.2f} | {ms} | `{query.replace('|', '/')}` |")

    redis_calls = []
    for line in (out / "redis-commandstats.txt").read_text().splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            stats = dict(kv.split("=") for kv in rest.split(","))
            redis_calls.append((name.removeprefix("cmdstat_"), int(stats["calls"]), float(stats["usec"])))
    redis_calls.sort(key=lambda r: -r[1])
    all_calls = sum(c for _, c, _ in redis_calls)
    print(f"\nRedis commands: {all_calls} ({all_calls / replies:.1f} per reply)")
    print("\n| command | per reply | Redis CPU ms |\n|---|---|---|")
    for name, count, usec in redis_calls[:12]:
        print(f"| {name} | {count / replies:.2f} | {usec / 1000:.0f} |")

    for proc in ("web", "worker"):
        folded = out / f"{proc}.folded"
        if not folded.exists():
            continue
        total, inclusive, own = top_frames(folded)
        print(f"\npy-spy, {proc}: {total} samples; project frames by inclusive share")
        print("\n| share | frame |\n|---|---|")
        for name, n in inclusive:
            print(f"| {100 * n / total:.1f} % | {name} |")
        print(f"\npy-spy, {proc}: leaf frames by own share\n\n| share | frame |\n|---|---|")
        for name, n in own:
            print(f"| {100 * n / total:.1f} % | {name} |")


if __name__ == "__main__":
    if sys.argv[1] == "--cpu-of-tree":
        print(cpu_of_tree(int(sys.argv[2])))
    else:
        report(Path(sys.argv[1]), int(sys.argv[2]))
