"""Application factory: config -> extensions -> blueprints -> errors -> celery."""

import importlib

from flask import Flask
from flask_cors import CORS

from backend.config import Config
from backend.extensions import ApiWithJsonErrors, RedisClients, celery_init_app, db, jwt, limiter, migrate
from backend.pool_ping import ping_after_idle

# Each module under backend/api/ exposes `blp`, a flask-smorest Blueprint.
API_MODULES = (
    "login",
    "users",
    "utils",
    "workspaces",
    "inbox",
    "services",
    "connectors",
    "conversations",
    "messages",
    "public",
    "webhooks",
)


def create_app(config: type[Config] | Config = Config) -> Flask:
    app = Flask(__name__, static_folder=None)
    # check() may fill in SECRET_KEY (local/test), so the app reads the checked settings.
    settings = config() if isinstance(config, type) else config
    settings.check()
    app.config.from_object(settings)
    from backend.logs import configure_logging

    configure_logging(app)

    from backend import models  # noqa: F401  (models must be known to Flask-Migrate)

    if app.config["TRUSTED_PROXY_HOPS"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXY_HOPS"]
        # Werkzeug's documented way to wrap the app: the instance attribute shadows the method.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    db.init_app(app)
    with app.app_context():
        _tune_engine(db.engine)
        ping_after_idle(db.engine, app.config["DB_PING_AFTER_IDLE_SECONDS"])
    migrate.init_app(app, db, directory=str(_migrations_dir()), render_as_batch=True)
    jwt.init_app(app)
    clients = RedisClients(app)
    if app.config["RATELIMIT_STORAGE_URI"] == app.config["REDIS_URL"]:
        # The limiter's commands go through the app's bounded pool instead of a pool of its own.
        app.config["RATELIMIT_STORAGE_OPTIONS"] = {"connection_pool": clients.client.connection_pool}
    limiter.init_app(app)
    from backend.stream_tail import init_hub

    init_hub(app)
    if app.config["BACKEND_CORS_ORIGINS"]:
        CORS(app, origins=app.config["BACKEND_CORS_ORIGINS"], supports_credentials=True)
    # Each app has its own Api (and OpenAPI document), kept by flask-smorest in app.extensions.
    smorest_api = ApiWithJsonErrors(app)

    from backend.auth import register_fresh_token_header, register_jwt_callbacks

    register_jwt_callbacks(jwt)
    register_fresh_token_header(app)
    # /private/... (backend/api/private.py) exists on a developer's machine only.
    local_modules = ("private",) if app.config["ENVIRONMENT"] == "local" else ()
    for name in (*API_MODULES, *local_modules):
        module = importlib.import_module(f"backend.api.{name}")
        smorest_api.register_blueprint(module.blp, url_prefix="/api/v1" + module.URL_PREFIX)
    from backend.api.parsing import register_body_limits

    register_body_limits(app)
    from backend.web import register_web

    register_web(app)

    from backend.errors import register_error_handlers

    register_error_handlers(app)
    celery_init_app(app)
    from backend.services import push_outbox, webhook_outbox

    webhook_outbox.init_app(app)
    push_outbox.init_app(app)
    from backend.services import inbox_events

    inbox_events.init_app(app)

    from backend import cli

    cli.register(app)
    return app


def _migrations_dir():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "migrations"


def _tune_engine(engine) -> None:
    """Per-connection settings.

    PostgreSQL: JIT off. Its compile step costs more than the short OLTP queries of
    this app ever run (a conversation search went from ~1 s to tens of ms without it).
    SQLite (the embedded default) is shared by web and worker processes: WAL lets
    readers run beside the writer, and a busy timeout makes writers wait, not fail."""
    from sqlalchemy import event

    if engine.dialect.name == "postgresql":

        @event.listens_for(engine, "connect")
        def _postgres_on_connect(dbapi_connection, _record):
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET jit = off")
            dbapi_connection.commit()

    elif engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_on_connect(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
