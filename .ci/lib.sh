# Shared steps of .ci/up, .ci/test and .ci/run: each checks first and installs
# only what is missing, so they are fast on a machine that already has it all.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

apt_install() {
  command -v apt-get >/dev/null || { log "apt-get is not available: install $* by hand"; return 1; }
  log "installing $* from Debian's packages"
  as_root apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

requirements_met() {  # $1: requirements file; true when pip would install nothing (no index asked)
  "$VENV/bin/python" -m pip install --dry-run --no-index --quiet -r "$1" >/dev/null 2>&1
}

ensure_venv() {  # $1: requirements file
  local req="$1" stamp="$VENV/.installed-$(basename "$1")"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating the virtualenv in .venv"
    python3 -m venv "$VENV" || { apt_install python3-venv && python3 -m venv "$VENV"; }
  fi
  local want; want="$(cat "$req" requirements.txt | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    :
  elif requirements_met "$req"; then
    log "the virtualenv already has everything in $req"
  else
    log "installing Python packages from $req"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -r "$req"
    echo "$want" >"$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

redis_up() { "$VENV/bin/python" - "$1" <<'PY' 2>/dev/null
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

ensure_redis() {  # $1: URL
  local url="${1:-redis://localhost:6379/0}"
  redis_up "$url" && return 0
  command -v redis-server >/dev/null || apt_install redis-server || true
  if command -v redis-server >/dev/null; then
    log "starting a local redis-server"
    mkdir -p /tmp/redis-local
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp/redis-local --logfile /tmp/redis-local/redis.log
    for _ in $(seq 50); do redis_up "$url" && return 0; sleep 0.1; done
  fi
  log "Redis does not answer at $url and could not be started: install redis-server, or set REDIS_URL"
  return 1
}

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

ensure_postgres() {
  command -v pg_isready >/dev/null || apt_install postgresql postgresql-client || true
  pg_up && return 0
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    log "starting PostgreSQL"
    local version; version="$(ls /etc/postgresql | sort -V | tail -1)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 50); do pg_up && break; sleep 0.2; done
  fi
  pg_up || { log "PostgreSQL does not answer on 127.0.0.1:5432"; return 1; }
  # Tests connect as postgres over TCP without a password (trust), as on the CI machine.
  psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1 || {
    log "cannot connect as postgres@127.0.0.1 (trust auth expected); set TEST_DATABASE_URL"
    return 1
  }
}

ensure_chromium() {  # the visitor page's browser test drives Debian's Chromium
  command -v chromium >/dev/null && return 0
  apt_install chromium || log "Chromium could not be installed: the browser test will be skipped"
}
