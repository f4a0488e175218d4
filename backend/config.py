"""Configuration classes, read from the environment (names are in API.md)."""

import logging
import os
import secrets
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import overload

from argon2.profiles import RFC_9106_LOW_MEMORY

INSTANCE_DIR = Path(__file__).resolve().parent.parent / "instance"
DEFAULT_SECRET_KEY = "changethis"
DEFAULT_SUPERUSER_PASSWORD = "changethis"
# Environments a developer chooses explicitly; anything else (unset included) is a deployment.
DEVELOPMENT_ENVIRONMENTS = ("local", "test")
MIN_SECRET_KEY_BYTES = 32
GENERATE_KEY_COMMAND = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
# Values from templates, tutorials and docs: a key anyone can guess signs tokens anyone can forge.
KNOWN_SECRETS = frozenset(
    {
        "changethis", "changeme", "change-me", "change_me", "change-this", "secret", "secrets",
        "secretkey", "secret-key", "secret_key", "mysecret", "my-secret", "my-secret-key",
        "mysecretkey", "supersecret", "super-secret", "super-secret-key", "supersecretkey",
        "your-secret-key", "your_secret_key", "yoursecretkey", "your-secret-key-here",
        "jwt-secret", "jwt_secret", "jwtsecret", "password", "passw0rd", "default", "dev",
        "development", "test", "testing", "key", "insecure", "notsecret", "not-a-secret",
        "s3cr3t", "admin", "123456", "12345678", "please-change-me",
    }
)  # fmt: skip
# Read by the process launchers (gunicorn.conf.py, the Procfile) or a command (`flask seed`),
# not by the app; the README's environment table lists them with the Config settings.
PROCESS_SETTINGS = (
    "HOST",
    "FLOWER_PORT",
    "FLOWER_BASIC_AUTH",
    "WEB_CONCURRENCY",
    "WEB_WORKER_CONNECTIONS",
    "WEB_TIMEOUT",
    "WEB_GRACEFUL_TIMEOUT",
    "WORKER_CONCURRENCY",
    "WEBHOOK_WORKER_CONCURRENCY",
    "SEED_DEMO_PASSWORD",
)
DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/app_test"
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/1"


@overload
def _env(name: str, default: str) -> str: ...
@overload
def _env(name: str, default: None = None) -> str | None: ...
def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _float(name: str, default: float) -> float:
    return float(_env(name, str(default)))


def _bool(name: str, default: bool) -> bool:
    return (_env(name, "true" if default else "false") or "").lower() == "true"


def _database_url() -> str:
    url = _env("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'app.db'}")
    # Heroku-style URLs name the dialect "postgres"; SQLAlchemy wants "postgresql".
    return normalize_database_url(url)


def normalize_database_url(url: str) -> str:
    """Plain postgres(ql):// URLs use psycopg2, the driver psycogreen makes cooperative."""
    for plain in ("postgres://", "postgresql://"):
        if url.startswith(plain):
            return "postgresql+psycopg2://" + url[len(plain) :]
    return url


def well_known(value: str | None) -> bool:
    return value is not None and value.strip().lower() in KNOWN_SECRETS


def secret_key_problem(key: str | None) -> str | None:
    """Why `key` cannot sign tokens of a deployment, or None when it can."""
    if not key:
        return "is not set"
    if well_known(key):
        return f'is "{key}", a well-known value'
    if len(key.encode()) < MIN_SECRET_KEY_BYTES:
        return f"is shorter than {MIN_SECRET_KEY_BYTES} bytes"
    return None


def local_secret_key(path: Path) -> str:
    """The key kept in `path` (mode 0600), generated on first use.

    Processes starting together (web, worker, flower) agree on one key: the file
    appears whole through a hard link, and a process that loses the race reads it."""
    for _ in range(2):
        try:
            key = path.read_text().strip()
        except FileNotFoundError:
            key = None
        if key is not None:
            if len(key.encode()) < MIN_SECRET_KEY_BYTES:
                raise RuntimeError(f"{path} holds no usable key: delete it and start again.")
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret_key-")  # 0600
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process was first: read its key
        finally:
            os.unlink(temporary)
    raise RuntimeError(f"Could not create {path}.")


class Config:
    # Unset means a deployment: only an explicit "local" or "test" relaxes the checks below.
    ENVIRONMENT = _env("ENVIRONMENT", "production")
    # Checked (and, in local/test, filled in) by check() before the app uses it.
    SECRET_KEY = _env("SECRET_KEY")
    SECRET_KEY_FILE = INSTANCE_DIR / "secret_key"
    PROJECT_NAME = _env("PROJECT_NAME", "Scheduling Assistant")

    SQLALCHEMY_DATABASE_URI = _database_url()
    SQLALCHEMY_ENGINE_OPTIONS = {
        "pool_size": _int("DB_POOL_SIZE", 10),
        "max_overflow": _int("DB_MAX_OVERFLOW", 20),
    }
    # A pooled connection back in the pool for longer than this is pinged before use
    # (backend/pool_ping.py); one handed back more recently is used as it is.
    DB_PING_AFTER_IDLE_SECONDS = _float("DB_PING_AFTER_IDLE_SECONDS", 1.0)
    REDIS_URL = _env("REDIS_URL", "redis://localhost:6379/0")
    CELERY_BROKER_URL = _env("CELERY_BROKER_URL", REDIS_URL)
    # Short commands, the rate limiter and the SSE hub's look-ups share this pool.
    REDIS_MAX_CONNECTIONS = _int("REDIS_MAX_CONNECTIONS", 50)
    CELERY_VISIBILITY_TIMEOUT = _int("CELERY_VISIBILITY_TIMEOUT", 3600)
    CELERY_PREFETCH_MULTIPLIER = _int("CELERY_PREFETCH_MULTIPLIER", 4)
    # kombu's Redis channel pool holds 10 connections by default and raises past that.
    CELERY_BROKER_MAX_CONNECTIONS = _int("CELERY_BROKER_MAX_CONNECTIONS", 1000)
    # Broker connections a process sends tasks over (Celery's producer pool); a burst of
    # posts waits its turn (cooperatively under gevent) instead of opening more.
    CELERY_BROKER_POOL_LIMIT = _int("CELERY_BROKER_POOL_LIMIT", 10)
    # Run tasks in the calling process (no worker): for tests and one-off scripts only.
    CELERY_TASK_ALWAYS_EAGER = _bool("CELERY_TASK_ALWAYS_EAGER", False)
    LOG_LEVEL = (_env("LOG_LEVEL", "INFO") or "INFO").upper()

    # Auth (template behaviour: 8-day access tokens, 48-hour reset tokens).
    ACCESS_TOKEN_EXPIRE = timedelta(minutes=_int("ACCESS_TOKEN_EXPIRE_MINUTES", 60 * 24 * 8))
    JWT_ACCESS_TOKEN_EXPIRES = ACCESS_TOKEN_EXPIRE
    EMAIL_RESET_TOKEN_EXPIRE = timedelta(hours=_int("EMAIL_RESET_TOKEN_EXPIRE_HOURS", 48))
    FIRST_SUPERUSER = _env("FIRST_SUPERUSER", "admin@example.com")
    FIRST_SUPERUSER_PASSWORD = _env("FIRST_SUPERUSER_PASSWORD", DEFAULT_SUPERUSER_PASSWORD)
    # argon2id cost of password hashes (time passes, memory in KiB, lanes): argon2-cffi's
    # defaults (RFC 9106's low-memory profile), ~0.1 s per hash. Only tests lower them.
    PASSWORD_HASH_TIME_COST = _int("PASSWORD_HASH_TIME_COST", RFC_9106_LOW_MEMORY.time_cost)
    PASSWORD_HASH_MEMORY_COST = _int("PASSWORD_HASH_MEMORY_COST", RFC_9106_LOW_MEMORY.memory_cost)
    PASSWORD_HASH_PARALLELISM = _int("PASSWORD_HASH_PARALLELISM", RFC_9106_LOW_MEMORY.parallelism)

    # LLM
    GROQ_API_KEY = _env("GROQ_API_KEY")
    GROQ_BASE_URL = _env("GROQ_BASE_URL")
    TEXT_MODEL_NAME = _env("TEXT_MODEL_NAME", "llama-3.3-70b-versatile")
    MODEL_TEMPERATURE = _float("MODEL_TEMPERATURE", 0.7)
    GROQ_TIMEOUT_SECONDS = _float("GROQ_TIMEOUT_SECONDS", 60.0)
    GROQ_MAX_RETRIES = _int("GROQ_MAX_RETRIES", 2)
    GROQ_RETRY_BACKOFF_SECONDS = _float("GROQ_RETRY_BACKOFF_SECONDS", 0.5)
    # The SDK's own pool allows 100 connections; a gevent worker runs more runs than that.
    # Few keep-alive connections: the pool's bookkeeping grows with their number.
    GROQ_HTTP_MAX_CONNECTIONS = _int("GROQ_HTTP_MAX_CONNECTIONS", 2000)
    GROQ_HTTP_KEEPALIVE_CONNECTIONS = _int("GROQ_HTTP_KEEPALIVE_CONNECTIONS", 20)
    AGENT_KB_MAX_CHARS = _int("AGENT_KB_MAX_CHARS", 24_000)
    AGENT_HISTORY_MESSAGES = _int("AGENT_HISTORY_MESSAGES", 20)
    AGENT_HISTORY_MAX_CHARS = _int("AGENT_HISTORY_MAX_CHARS", 16_000)
    AGENT_MAX_TOOL_ROUNDS = _int("AGENT_MAX_TOOL_ROUNDS", 3)
    TIME_SAVED_PER_REPLY_MINUTES = _int("TIME_SAVED_PER_REPLY_MINUTES", 2)

    # Runs and the event stream
    SSE_HEARTBEAT_SECONDS = _float("SSE_HEARTBEAT_SECONDS", 15.0)
    SSE_MAX_SECONDS = _float("SSE_MAX_SECONDS", 300.0)
    STREAM_MAXLEN = _int("STREAM_MAXLEN", 20_000)
    STREAM_TTL_SECONDS = _int("STREAM_TTL_SECONDS", 2 * 3600)
    RUN_HEARTBEAT_SECONDS = _float("RUN_HEARTBEAT_SECONDS", 5.0)
    RUN_CANCEL_POLL_SECONDS = _float("RUN_CANCEL_POLL_SECONDS", 0.25)
    RUN_STALE_SECONDS = _float("RUN_STALE_SECONDS", 30.0)
    RUN_RECOVERY_INTERVAL_SECONDS = _float("RUN_RECOVERY_INTERVAL_SECONDS", 10.0)
    # Riding out outages (README, "Failure modes"): how long a run keeps trying to write its
    # first/last stream event while Redis is down, and to save its reply while PostgreSQL is.
    STREAM_WRITE_RETRY_SECONDS = _float("STREAM_WRITE_RETRY_SECONDS", 60.0)
    RUN_SAVE_RETRY_SECONDS = _float("RUN_SAVE_RETRY_SECONDS", 60.0)
    # Entries waiting for one SSE connection that does not read; past it the connection is
    # closed (the client resumes with Last-Event-ID), so a stuck client costs bounded memory.
    SSE_MAX_PENDING_ENTRIES = _int("SSE_MAX_PENDING_ENTRIES", 5_000)
    SSE_SEND_BUFFER_BYTES = _int("SSE_SEND_BUFFER_BYTES", 128 * 1024)  # 0: the kernel's autotuning
    AGENT_QUEUE = _env("AGENT_QUEUE", "agent-runs")
    # The owner's live inbox: how long a ticket for its event stream stays valid.
    INBOX_TICKET_SECONDS = _int("INBOX_TICKET_SECONDS", 60)

    # Rate limits (Flask-Limiter strings)
    RATELIMIT_ENABLED = _bool("RATELIMIT_ENABLED", True)
    RATELIMIT_STORAGE_URI = _env("RATELIMIT_STORAGE_URI", REDIS_URL)
    # Retry-After goes on 429s only, computed by errors.py (Flask-Limiter would add it everywhere).
    RATELIMIT_HEADERS_ENABLED = False
    # A Redis outage must not turn every request into a 500: limits fail open.
    RATELIMIT_SWALLOW_ERRORS = True
    # Per client IP, on login, password recovery and reset (guessing passwords, mail floods).
    LOGIN_RATE_LIMIT = _env("LOGIN_RATE_LIMIT", "10/minute")
    PUBLIC_MESSAGE_RATE_LIMIT_PER_CONVERSATION = _env(
        "PUBLIC_MESSAGE_RATE_LIMIT_PER_CONVERSATION", "20/minute"
    )
    PUBLIC_RATE_LIMIT_PER_IP = _env("PUBLIC_RATE_LIMIT_PER_IP", "120/minute")
    PUBLIC_CONVERSATION_RATE_LIMIT_PER_IP = _env("PUBLIC_CONVERSATION_RATE_LIMIT_PER_IP", "30/minute")

    # HTTP
    MAX_CONTENT_LENGTH = 1024 * 1024
    BACKEND_CORS_ORIGINS = [
        o.strip() for o in (_env("BACKEND_CORS_ORIGINS", "") or "").split(",") if o.strip()
    ]
    FRONTEND_HOST = _env("FRONTEND_HOST", "http://localhost:5173")
    PORT = _int("PORT", 8000)
    # Behind N reverse proxies / load balancers, the client IP (rate limits, logs) is
    # taken from the N-th X-Forwarded-For hop. 0 trusts no header.
    TRUSTED_PROXY_HOPS = _int("TRUSTED_PROXY_HOPS", 0)
    # When set, GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`.
    METRICS_TOKEN = _env("METRICS_TOKEN")

    # Uploaded images (avatars, workspace profile images; backend/services/media.py): files
    # under MEDIA_ROOT served by the app at /media/, or, with MEDIA_S3_BUCKET set, objects
    # in that bucket of an S3-compatible store. The *_PUBLIC_BASE_URL settings say where
    # visitors' browsers fetch them (a CDN, the bucket's public address).
    MEDIA_ROOT = _env("MEDIA_ROOT", str(INSTANCE_DIR / "media"))
    MEDIA_PUBLIC_BASE_URL = _env("MEDIA_PUBLIC_BASE_URL")
    MEDIA_S3_BUCKET = _env("MEDIA_S3_BUCKET")
    MEDIA_S3_ENDPOINT_URL = _env("MEDIA_S3_ENDPOINT_URL")
    MEDIA_S3_ACCESS_KEY_ID = _env("MEDIA_S3_ACCESS_KEY_ID")
    MEDIA_S3_SECRET_ACCESS_KEY = _env("MEDIA_S3_SECRET_ACCESS_KEY")
    MEDIA_S3_REGION = _env("MEDIA_S3_REGION", "us-east-1")
    MEDIA_S3_PUBLIC_BASE_URL = _env("MEDIA_S3_PUBLIC_BASE_URL")

    # Email
    SMTP_HOST = _env("SMTP_HOST")
    SMTP_PORT = _int("SMTP_PORT", 587)
    SMTP_USER = _env("SMTP_USER")
    SMTP_PASSWORD = _env("SMTP_PASSWORD")
    SMTP_TLS = _bool("SMTP_TLS", True)
    SMTP_SSL = _bool("SMTP_SSL", False)
    EMAILS_FROM_EMAIL = _env("EMAILS_FROM_EMAIL", "noreply@example.com")
    # Emails are Celery tasks (default queue): a refused connection or a temporary SMTP
    # answer (4xx) is retried up to EMAIL_MAX_RETRIES times, after exponential delays
    # (EMAIL_RETRY_BACKOFF_SECONDS doubled each time, jittered, at most
    # EMAIL_RETRY_BACKOFF_MAX_SECONDS). A permanent answer (5xx) is not retried.
    EMAIL_MAX_RETRIES = _int("EMAIL_MAX_RETRIES", 5)
    EMAIL_RETRY_BACKOFF_SECONDS = _float("EMAIL_RETRY_BACKOFF_SECONDS", 5.0)
    EMAIL_RETRY_BACKOFF_MAX_SECONDS = _float("EMAIL_RETRY_BACKOFF_MAX_SECONDS", 600.0)

    # Webhooks (README "Webhooks"): endpoints must be https and publicly routable unless
    # these allow http / private addresses (tests and a local receiver). An attempt times out
    # after WEBHOOK_TIMEOUT_SECONDS; failures are retried after the delays (seconds, jittered)
    # of WEBHOOK_RETRY_SCHEDULE, then the delivery fails; a subscription failing
    # WEBHOOK_DISABLE_AFTER_FAILURES times in a row is switched off and its owner emailed.
    WEBHOOK_ALLOW_HTTP = _bool("WEBHOOK_ALLOW_HTTP", False)
    WEBHOOK_ALLOW_PRIVATE = _bool("WEBHOOK_ALLOW_PRIVATE", False)
    WEBHOOK_TIMEOUT_SECONDS = _float("WEBHOOK_TIMEOUT_SECONDS", 5.0)
    WEBHOOK_RETRY_SCHEDULE = _env("WEBHOOK_RETRY_SCHEDULE", "5,30,120,600,1800,3600,7200,14400,28800,28800")
    WEBHOOK_DISABLE_AFTER_FAILURES = _int("WEBHOOK_DISABLE_AFTER_FAILURES", 50)
    # An attempt in flight holds its delivery this long; a worker killed mid-attempt leaves
    # it to the sweep (every WEBHOOK_SWEEP_INTERVAL_SECONDS) once the lease ends.
    WEBHOOK_LEASE_SECONDS = _float("WEBHOOK_LEASE_SECONDS", 30.0)
    WEBHOOK_SWEEP_INTERVAL_SECONDS = _float("WEBHOOK_SWEEP_INTERVAL_SECONDS", 10.0)
    # How long a process trusts its answer to "which events does this workspace subscribe
    # to" (no query per message while it holds; a new subscription hears events after it).
    WEBHOOK_SUBSCRIPTION_CACHE_SECONDS = _float("WEBHOOK_SUBSCRIPTION_CACHE_SECONDS", 5.0)

    # Push notifications to the owners' phones (README "Push notifications"): Expo's push API
    # (EXPO_ACCESS_TOKEN when the Expo project requires one). An attempt times out after
    # EXPO_PUSH_TIMEOUT_SECONDS; no answer, a 5xx or a 429 is retried after
    # PUSH_RETRY_BACKOFF_SECONDS, doubled each time (jittered, at most
    # PUSH_RETRY_BACKOFF_MAX_SECONDS), until PUSH_MAX_ATTEMPTS attempts were made. An attempt in
    # flight holds its notification PUSH_LEASE_SECONDS; the sweep (every
    # PUSH_SWEEP_INTERVAL_SECONDS) sends again what a lost task or a killed worker left.
    EXPO_PUSH_URL = _env("EXPO_PUSH_URL", "https://exp.host/--/api/v2/push/send")
    EXPO_ACCESS_TOKEN = _env("EXPO_ACCESS_TOKEN")
    EXPO_PUSH_TIMEOUT_SECONDS = _float("EXPO_PUSH_TIMEOUT_SECONDS", 10.0)
    PUSH_MAX_ATTEMPTS = _int("PUSH_MAX_ATTEMPTS", 8)
    PUSH_RETRY_BACKOFF_SECONDS = _float("PUSH_RETRY_BACKOFF_SECONDS", 2.0)
    PUSH_RETRY_BACKOFF_MAX_SECONDS = _float("PUSH_RETRY_BACKOFF_MAX_SECONDS", 300.0)
    PUSH_LEASE_SECONDS = _float("PUSH_LEASE_SECONDS", 30.0)
    PUSH_SWEEP_INTERVAL_SECONDS = _float("PUSH_SWEEP_INTERVAL_SECONDS", 10.0)

    # OpenAPI (flask-smorest)
    API_TITLE = "Scheduling Assistant API"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api/v1"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "/docs"
    OPENAPI_SWAGGER_UI_URL = "/api/v1/static/swagger-ui/"
    # No validator badge: it would fetch from the internet; keep the token across reloads.
    OPENAPI_SWAGGER_UI_CONFIG = {"validatorUrl": None, "persistAuthorization": True}
    API_SPEC_OPTIONS = {
        "info": {
            "description": (
                'Every error body is `{"detail": str, "errors"?: {field: [messages]}}` '
                "(schema `Error`); each operation lists every status it answers with."
            )
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                # A public conversation's visitor token, as a header or (for EventSource) a query.
                "visitorToken": {"type": "apiKey", "in": "header", "name": "X-Visitor-Token"},
                "visitorTokenQuery": {"type": "apiKey", "in": "query", "name": "visitor_token"},
            }
        },
    }

    def check(self) -> None:
        """Refuses to start a deployment with a guessable secret; in local/test, an unset
        or well-known SECRET_KEY is replaced by one nobody can guess."""
        if self.ENVIRONMENT in DEVELOPMENT_ENVIRONMENTS:
            self._use_a_development_key()
            return
        problems = self.deployment_problems()
        if problems:
            raise RuntimeError(
                f"Refusing to start with ENVIRONMENT={self.ENVIRONMENT} (set ENVIRONMENT=local on a "
                "development machine):\n- " + "\n- ".join(problems)
            )

    def _use_a_development_key(self) -> None:
        if self.SECRET_KEY and not well_known(self.SECRET_KEY):
            return
        if self.SECRET_KEY:
            logging.getLogger(__name__).warning("SECRET_KEY is well known: using a generated key")
        # Locally the key is kept, so tokens survive a restart; tests need no file.
        self.SECRET_KEY = (
            local_secret_key(Path(self.SECRET_KEY_FILE))
            if self.ENVIRONMENT == "local"
            else secrets.token_urlsafe(48)
        )

    def deployment_problems(self) -> list[str]:
        """Why this configuration cannot run a deployment (empty when it can)."""
        problems = []
        problem = secret_key_problem(self.SECRET_KEY)
        if problem is not None:
            problems.append(
                f"SECRET_KEY {problem}: set it to a long random value, e.g. the output of "
                f"{GENERATE_KEY_COMMAND}"
            )
        if well_known(self.FIRST_SUPERUSER_PASSWORD):
            problems.append(
                "FIRST_SUPERUSER_PASSWORD is a well-known value (like the default "
                f'"{DEFAULT_SUPERUSER_PASSWORD}"): set a strong password'
            )
        return problems


class TestConfig(Config):
    ENVIRONMENT = "test"
    TESTING = True
    SQLALCHEMY_DATABASE_URI = normalize_database_url(_env("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL))
    REDIS_URL = _env("TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    CELERY_BROKER_URL = REDIS_URL
    RATELIMIT_STORAGE_URI = REDIS_URL
    RATELIMIT_ENABLED = False
    SECRET_KEY = "test-secret-key-that-is-long-enough-for-hs256"
    # Uploads in tests never land in the project's instance/ directory.
    MEDIA_ROOT = str(Path(tempfile.gettempdir()) / "app-test-media")
    MEDIA_S3_BUCKET = None
    # The cheapest argon2 parameters: tests create hundreds of users; the hash stays real.
    PASSWORD_HASH_TIME_COST = 1
    PASSWORD_HASH_MEMORY_COST = 8
    PASSWORD_HASH_PARALLELISM = 1
