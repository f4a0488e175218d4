#!/usr/bin/env bash
# Where a reply's cost goes under a burst: the S2L load of ../shared/peers (500 visitors post
# within 2 s, replies of 40 tokens 250 ms apart) against ONE web process and ONE worker started
# from the Procfile, with
#   - a private PostgreSQL cluster (initdb in a temp dir) with pg_stat_statements,
#   - a private redis-server (INFO commandstats after the load),
#   - py-spy sampling the web and the worker through the load.
# Prints CPU per reply by process, SQL statements and Redis commands per reply, and the top
# frames of each process. Run from the project's root:   bash bench/profile_burst.sh
#   SCENARIO=S2L (or S1c1)   OUT=/tmp/profile-...   PROJECT_EXTRA_ENV="K=V ..."
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PEERS_DIR="$ROOT/../shared/peers"
PEERS_PY="${TMPDIR:-/tmp}/peers-venv/bin/python"
[ -x "$PEERS_PY" ] || { echo "run ../shared/peers/compare.sh once first (it makes $PEERS_PY)"; exit 1; }
. .venv/bin/activate
OUT=${OUT:-/tmp/profile-$(date +%Y%m%d-%H%M%S)}
SCENARIO=${SCENARIO:-S2L}
mkdir -p "$OUT"
free_port() { python -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -- "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${PIDS[@]}"; do kill -9 -- "$pid" 2>/dev/null || true; done
  [ -n "${PGDATA_DIR:-}" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate stop >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# -- PostgreSQL with pg_stat_statements ------------------------------------------------------
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGDATA_DIR="$OUT/pgdata"; mkdir -p "$PGDATA_DIR"; [ "$(id -u)" = 0 ] && chown postgres "$OUT" "$PGDATA_DIR"
PGPORT=$(free_port)
as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres -A trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$OUT/postgres.log" -o "-p $PGPORT -k $OUT \
  -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_preload_libraries=pg_stat_statements \
  -c pg_stat_statements.track=all" start >/dev/null
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE DATABASE app" -c "CREATE EXTENSION pg_stat_statements"
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d app -c "CREATE EXTENSION pg_stat_statements"

# -- Redis, fake Groq -------------------------------------------------------------------------
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --maxclients 20000 >"$OUT/redis.log" 2>&1 &
PIDS+=($!)
"$PEERS_PY" "$PEERS_DIR/bench_llm.py" --port 0 --port-file "$OUT/llm.port" >"$OUT/llm.log" 2>&1 &
LLM_PID=$!; PIDS+=($LLM_PID)
for _ in $(seq 50); do [ -s "$OUT/llm.port" ] && redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# -- the project, as compare.sh starts it -----------------------------------------------------
WEB_PORT=$(free_port)
export ENVIRONMENT=local SECRET_KEY=bench-secret-key-0123456789 WEB_CONCURRENCY=1 PORT="$WEB_PORT" \
  DATABASE_URL="postgresql://postgres@127.0.0.1:$PGPORT/app" \
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" CELERY_BROKER_URL="redis://127.0.0.1:$REDIS_PORT/0" \
  GROQ_BASE_URL="http://127.0.0.1:$(cat "$OUT/llm.port")" GROQ_API_KEY=bench-key \
  LOGIN_RATE_LIMIT=100000/minute PUBLIC_RATE_LIMIT_PER_IP=100000/minute \
  PUBLIC_CONVERSATION_RATE_LIMIT_PER_IP=100000/minute PUBLIC_MESSAGE_RATE_LIMIT_PER_CONVERSATION=100000/minute
for kv in ${PROJECT_EXTRA_ENV:-}; do export "${kv?}"; done
line() { grep "^$1:" Procfile | cut -d: -f2-; }
(eval "$(line release)") >/dev/null
flask --app wsgi seed >/dev/null
setsid bash -c "exec $(line worker)" >"$OUT/worker.log" 2>&1 &
WORKER_GROUP=$!; PIDS+=(-$WORKER_GROUP)
setsid bash -c "exec $(line web)" >"$OUT/web.log" 2>&1 &
WEB_GROUP=$!; PIDS+=(-$WEB_GROUP)
for _ in $(seq 300); do curl -s -o /dev/null -m 1 "http://127.0.0.1:$WEB_PORT/api/v1/utils/health-check/" && break; sleep 0.1; done
for _ in $(seq 300); do grep -q " ready\." "$OUT/worker.log" && break; sleep 0.1; done
WEB_PID=$(pgrep -P "$WEB_GROUP" | head -1)  # gunicorn's one worker process
WORKER_PID=$WORKER_GROUP
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d app -c "SELECT pg_stat_statements_reset()" >/dev/null
redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
PG_MAIN=$(head -1 "$PGDATA_DIR/postmaster.pid")
python "$ROOT/bench/profile_report.py" --cpu-of-tree "$PG_MAIN" >"$OUT/pg-cpu-before"
pg_sessions() { psql -At -h 127.0.0.1 -p "$PGPORT" -U postgres -d app -c "SELECT sessions FROM pg_stat_database WHERE datname = 'app'"; }
pg_sessions >"$OUT/pg-sessions-before"

case $SCENARIO in
  S2L) ARGS="--hold 500 --ramp 2 --tokens 40 --ms 250 --ttft 0 --timeout 150 --max-seconds 240"; REPLIES=500 ;;
  S1c1) ARGS="--visitors 100 --concurrency 1 --tokens 20 --ms 0 --ttft 0 --warmup 5"; REPLIES=105 ;;
  *) echo "SCENARIO is S2L or S1c1"; exit 1 ;;
esac
py-spy record --pid "$WEB_PID" --rate 50 --format raw --nonblocking -o "$OUT/web.folded" >"$OUT/py-spy-web.log" 2>&1 &
SPY_WEB=$!
py-spy record --pid "$WORKER_PID" --rate 50 --format raw --nonblocking -o "$OUT/worker.folded" >"$OUT/py-spy-worker.log" 2>&1 &
SPY_WORKER=$!
# shellcheck disable=SC2086
"$PEERS_PY" "$PEERS_DIR/loadgen.py" --adapter project --base "http://127.0.0.1:$WEB_PORT" --handle demo \
  --label project --scenario "$SCENARIO" --server-pids "web=$WEB_PID,worker=$WORKER_PID" --llm-pid "$LLM_PID" \
  --redis-port "$REDIS_PORT" --json "$OUT/load.json" $ARGS >"$OUT/load.txt" 2>&1
kill -INT "$SPY_WEB" "$SPY_WORKER"; wait "$SPY_WEB" "$SPY_WORKER" || true
python "$ROOT/bench/profile_report.py" --cpu-of-tree "$PG_MAIN" >"$OUT/pg-cpu-after"
pg_sessions >"$OUT/pg-sessions-after"
redis-cli -p "$REDIS_PORT" info commandstats >"$OUT/redis-commandstats.txt"
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d app -At -F $'\t' -c "
  SELECT calls, round(total_exec_time::numeric, 1), left(regexp_replace(query, '\s+', ' ', 'g'), 110)
  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'app')
  ORDER BY calls DESC" >"$OUT/pg-statements.tsv"
python "$ROOT/bench/profile_report.py" "$OUT" "$REPLIES"
