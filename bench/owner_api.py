"""Benchmark of the owner API's list and analytics endpoints on a busy workspace.

    python bench/owner_api.py [--requests 50] [--conversations 10000] [--messages 200000] [--reuse]

DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/bench_owner, created when
missing) gets a fresh schema from the migrations, then one workspace is seeded with
COPY: N conversations over the last 90 days, M messages (a visitor message, then a
reply with token usage and its agent run; one conversation holds 2,000 messages).
Each case is timed through the Flask test client (routing, auth, SQL, serialization)
and a table of p50/p95 in milliseconds is printed. A common word's exact count is kept
between requests until the workspace's conversations change; the ", first ask" case
drops it before each request. `--reuse` skips seeding when the
database already holds the workspace.
"""

import argparse
import io
import json
import logging
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
from sqlalchemy import text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend import create_app  # noqa: E402
from backend.config import Config, normalize_database_url  # noqa: E402
from backend.extensions import db  # noqa: E402

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bench_owner")
OWNER_EMAIL = "bench-owner@example.com"
BUSY_MESSAGES = 2000
CHANNELS = ("web", "web_public", "instagram", "whatsapp", "sms", "messenger", "chatgpt", "phone")
STATUSES = ("active", "active", "active", "closed", "archived")
TAGS = ("vip", "lead", "returning", "follow-up", "spam", "booking")
FIRST = ("Ana", "Bruno", "Carla", "Diego", "Elena", "Fabio", "Gina", "Hugo", "Ines", "Jon", "Kim", "Luz")
LAST = ("Garcia", "Smith", "Rossi", "Müller", "Silva", "Novak", "Tanaka", "Dubois", "Kowalski", "Olsen")
WORDS = (
    "hello hi price prices appointment availability tomorrow morning afternoon evening "
    "monday tuesday wednesday thursday friday weekend book booking slot session haircut "
    "massage consultation cost discount card cash parking address open close hours thanks "
    "please could would like need want time today next week first visit"
).split()
RARE_WORD = "reschedule"  # in ~0.5% of visitor messages: the `q` case
# Cases whose label ends so are timed with no search count kept (services.search_counts):
# the first time an owner asks, or after the workspace's conversations changed.
FIRST_ASK = ", first ask"


class BenchConfig(Config):
    ENVIRONMENT = "local"
    SQLALCHEMY_DATABASE_URI = normalize_database_url(DATABASE_URL)
    RATELIMIT_ENABLED = False
    SECRET_KEY = "bench-secret-key-that-is-long-enough-for-hs256"
    REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")


def ensure_database() -> None:
    url = make_url(normalize_database_url(DATABASE_URL))
    conn = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{url.database}"')
    conn.close()


def copy_rows(cursor, table: str, columns: tuple[str, ...], rows) -> None:
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(r"\N" if v is None else str(v) for v in row) + "\n")
    buffer.seek(0)
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)


def message_times(rng: random.Random, created: datetime, now: datetime, count: int) -> list[datetime]:
    """Chats come in bursts: sessions of a few minutes (about 30 messages each at most),
    the first when the conversation is created, later ones on other days."""
    sessions = [created] + sorted(
        created + timedelta(seconds=rng.uniform(0, max(1.0, (now - created).total_seconds())))
        for _ in range(count // 30)
    )
    moments = []
    for k in range(count):
        start = sessions[k * len(sessions) // max(count, 1)]
        moments.append(start + timedelta(seconds=40 * (k % 30) + rng.uniform(0, 30), microseconds=k))
    return sorted(min(m, now) for m in moments)


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def seed(n_conversations: int, n_messages: int) -> None:
    from backend.security import hash_password

    rng = random.Random(42)
    now = datetime.now(UTC)
    user_id, workspace_id = uuid.uuid4(), uuid.uuid4()
    raw = db.engine.raw_connection()
    cur = raw.cursor()
    stamp = now.isoformat()
    copy_rows(
        cur,
        '"user"',
        ("id", "email", "hashed_password", "is_active", "is_superuser", "social_links", "setup_completed",
         "created_at", "updated_at"),
        [(user_id, OWNER_EMAIL, hash_password("bench-password"), "t", "f", "{}", "t", stamp, stamp)],
    )  # fmt: skip
    workspace = (
        workspace_id,
        user_id,
        "bench",
        "Bench",
        "business",
        "friendly",
        "America/New_York",
        "t",
        stamp,
        stamp,
    )
    copy_rows(
        cur,
        "workspaces",
        (
            "id",
            "owner_id",
            "handle",
            "name",
            "type",
            "tone",
            "timezone",
            "is_active",
            "created_at",
            "updated_at",
        ),
        [workspace],
    )
    conversations, created = [], {}
    for i in range(n_conversations):
        cid = uuid.uuid4()
        created_at = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
        created[cid] = created_at
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        tags = json.dumps(rng.sample(TAGS, rng.randint(0, 2)))
        saved = rng.randint(0, 12)
        channel, status = rng.choice(CHANNELS), rng.choice(STATUSES)
        email = f"visitor{i}@example.com"
        row = (cid, workspace_id, name, email, channel, status, tags, saved, created_at, created_at)
        conversations.append(row)
    copy_rows(
        cur,
        "conversations",
        ("id", "workspace_id", "visitor_name", "visitor_email", "channel", "status", "tags",
         "human_time_saved_minutes", "created_at", "updated_at"),
        conversations,
    )  # fmt: skip
    ids = list(created)
    busy = ids[0]
    per_conversation = {cid: 0 for cid in ids}
    per_conversation[busy] = BUSY_MESSAGES
    for _ in range(n_messages - BUSY_MESSAGES):
        per_conversation[rng.choice(ids[1:])] += 1
    messages, runs = [], []
    for cid, count in per_conversation.items():
        question_id = None
        for k, moment in enumerate(message_times(rng, created[cid], now, count)):
            mid = uuid.uuid4()
            ts = moment.isoformat()
            if k % 2 == 0:
                content = sentence(rng, rng.randint(4, 14))
                if rng.random() < 0.005:
                    content += f" can I {RARE_WORD} my visit"
                messages.append((mid, cid, "user", content, ts, ts, None, "{}"))
                question_id = mid
            else:
                run_id = uuid.uuid4()
                usage = {"prompt_tokens": rng.randint(200, 900), "completion_tokens": rng.randint(20, 200)}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                degraded = rng.random() < 0.02
                meta = json.dumps({"model": "llama-3.3-70b-versatile", "usage": usage, "degraded": degraded})
                messages.append(
                    (mid, cid, "assistant", sentence(rng, rng.randint(10, 40)), ts, ts, run_id, meta)
                )
                runs.append((run_id, cid, question_id, mid, "completed", "t" if degraded else "f", 1, ts, ts))
    copy_rows(
        cur,
        "conversation_messages",
        ("id", "conversation_id", "role", "content", "timestamp", "created_at", "run_id", "meta"),
        messages,
    )
    copy_rows(
        cur,
        "agent_runs",
        ("id", "conversation_id", "user_message_id", "reply_message_id", "status", "degraded", "attempt",
         "created_at", "finished_at"),
        runs,
    )  # fmt: skip
    cur.execute(
        "UPDATE conversations c SET last_message_at = m.last FROM "
        "(SELECT conversation_id, max(timestamp) AS last FROM conversation_messages GROUP BY 1) m "
        "WHERE m.conversation_id = c.id"
    )
    raw.commit()
    raw.driver_connection.autocommit = True
    cur.execute("VACUUM ANALYZE")
    # Flush the bulk load now, so its checkpoint I/O does not land inside the timings.
    cur.execute("CHECKPOINT")
    # Back to transactions before the connection returns to the pool: in autocommit
    # mode the app's `SET LOCAL` (jit = off for lists) would silently do nothing.
    raw.driver_connection.autocommit = False
    raw.close()


def prepare(app, args) -> None:
    from flask_migrate import upgrade

    with app.app_context():
        if args.reuse:
            found = (
                db.session.execute(
                    text("SELECT 1 FROM information_schema.tables WHERE table_name = 'workspaces'")
                ).first()
                and db.session.execute(text("SELECT 1 FROM workspaces WHERE handle = 'bench'")).first()
            )
            if found:
                print("reusing the seeded database")
                return
        db.session.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        db.session.commit()
        upgrade()
        started = time.perf_counter()
        seed(args.conversations, args.messages)
        print(
            f"seeded {args.conversations} conversations, {args.messages} messages "
            f"in {time.perf_counter() - started:.1f}s"
        )


def forget_kept_counts(app) -> None:
    """Drops the search counts services.search_counts keeps, so the next search counts."""
    from backend.services.search_counts import KEY_PREFIX

    client = app.extensions["redis"].client
    for key in client.scan_iter(f"{KEY_PREFIX}*"):
        client.delete(key)


def timings(client, url: str, headers: dict, n: int, first_ask: bool) -> tuple[float, float, int]:
    for _ in range(3):
        response = client.get(url, headers=headers)
        assert response.status_code == 200, (url, response.status_code, response.get_data(as_text=True)[:300])
    samples = []
    for _ in range(n):
        if first_ask:
            forget_kept_counts(client.application)
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
    body = response.json
    size = body.get("count", len(body.get("series", [])))
    return statistics.median(samples), statistics.quantiles(samples, n=20)[-1], size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    ensure_database()
    app = create_app(BenchConfig)
    prepare(app, args)
    with app.app_context():
        cases, headers = build_cases()
    # Requests run outside any app context, as in production: each gets its own
    # context and database session, released when it ends.
    client = app.test_client()
    print(f"\n{'case':<46} {'p50 ms':>8} {'p95 ms':>8} {'count':>7}")
    print("-" * 72)
    for label, url in cases:
        first_ask = label.endswith(FIRST_ASK)
        p50, p95, count = timings(client, url, headers, args.requests, first_ask)
        print(f"{label:<46} {p50:>8.1f} {p95:>8.1f} {count:>7}")


def build_cases() -> tuple[list[tuple[str, str]], dict]:
    from backend.auth import issue_access_token
    from backend.models import Conversation, User, Workspace

    user = db.session.execute(db.select(User).where(User.email == OWNER_EMAIL)).scalar_one()
    workspace = db.session.execute(db.select(Workspace).where(Workspace.owner_id == user.id)).scalar_one()
    busy = db.session.execute(
        text("SELECT conversation_id FROM conversation_messages GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
    ).scalar_one()
    headers = {"Authorization": f"Bearer {issue_access_token(user)}"}
    since = (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    name = db.session.scalar(db.select(Conversation.visitor_name).limit(1)).split()[1]
    base = f"/api/v1/conversations/workspaces/{workspace.id}"
    cases = [
        ("conversations (no filter)", base),
        ("conversations status=closed", f"{base}?status=closed"),
        ("conversations channel=whatsapp", f"{base}?channel=whatsapp"),
        ("conversations tag=vip", f"{base}?tag=vip"),
        (f"conversations q={RARE_WORD} (messages)", f"{base}?q={RARE_WORD}"),
        (f"conversations q={name} (visitor)", f"{base}?q={name}"),
        ("conversations q=price (in ~40% of messages)", f"{base}?q=price"),
        (f"conversations q=price{FIRST_ASK}", f"{base}?q=price"),
        ("conversations since=7 days", f"{base}?since={since}"),
        ("conversations all filters", f"{base}?status=active&channel=web&tag=lead&q=price&since={since}"),
        ("conversations skip=9000", f"{base}?skip=9000"),
        (f"messages of busy conversation ({BUSY_MESSAGES})", f"/api/v1/messages/conversations/{busy}"),
        ("messages, last page", f"/api/v1/messages/conversations/{busy}?skip={BUSY_MESSAGES - 100}"),
        ("analytics days=30", f"/api/v1/workspaces/{workspace.id}/analytics?days=30"),
        ("analytics days=365", f"/api/v1/workspaces/{workspace.id}/analytics?days=365"),
    ]
    return cases, headers


if __name__ == "__main__":
    main()
