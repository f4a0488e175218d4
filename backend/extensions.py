"""Unbound Flask extensions, bound to an app by create_app() (which builds each app its own
ApiWithJsonErrors)."""

from collections.abc import Callable
from typing import TypeVar

import redis
from apispec.ext.marshmallow import MarshmallowPlugin
from celery import Celery, Task
from celery.worker.consumer import Consumer
from flask import Flask, current_app
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

from backend.api.openapi import DocumentedResponses, ErrorSchema, decimal_string_properties


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
jwt = JWTManager()
T = TypeVar("T")
limiter = Limiter(key_func=get_remote_address)


class ApiWithJsonErrors(Api):
    """flask-smorest's Api, with every HTTP error rendered by errors.py and an OpenAPI
    document that says so (backend/api/openapi.py completes each operation)."""

    # No catch-all `default` response: each operation lists the statuses it answers with.
    DEFAULT_ERROR_RESPONSE_NAME = None

    # flask-smorest's own error responses (e.g. the 422 of @blp.arguments) use our shape.
    ERROR_SCHEMA = ErrorSchema

    def _init_spec(self, *, extra_plugins=None, **options):
        marshmallow_plugin = options.pop("marshmallow_plugin", None) or MarshmallowPlugin()
        plugins = [*(extra_plugins or ()), DocumentedResponses(self._app, marshmallow_plugin)]
        super()._init_spec(marshmallow_plugin=marshmallow_plugin, extra_plugins=plugins, **options)
        self.ma_plugin.converter.add_attribute_function(decimal_string_properties)

    def handle_http_exception(self, error):
        from backend.errors import http_error_response

        return http_error_response(error)


def blocking_redis(url: str, max_connections: int, **options) -> redis.Redis:
    """A client whose pool blocks past `max_connections`: a caller waits for a free connection
    (cooperatively under gevent) instead of failing or opening more."""
    return redis.Redis(
        connection_pool=redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=20,
            decode_responses=True,
            socket_timeout=10,
            **options,
        )
    )


class RedisClients:
    """The app's pooled Redis client for short commands, configured from REDIS_URL, kept on
    `app.extensions["redis"]` so two apps in one process never share one. (Blocking stream
    reads have their own connection: backend/stream_tail.py.)"""

    def __init__(self, app: Flask) -> None:
        self.client = blocking_redis(
            app.config["REDIS_URL"], app.config["REDIS_MAX_CONNECTIONS"], socket_connect_timeout=5
        )
        app.extensions["redis"] = self


def app_state(name: str, make: Callable[[Flask], T]) -> T:
    """The current app's `name` (in app.extensions), made by `make(app)` on first use: state
    only some processes need, such as a worker's stream writer."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions.get(name)
    if state is None:
        state = app.extensions.setdefault(name, make(app))
    return state


def redis_client() -> redis.Redis:
    """The current app's Redis client (code running outside an app context, such as a
    side thread, pushes the app's context or is handed the client)."""
    return current_app.extensions["redis"].client


class QuickReconnectConsumer(Consumer):
    """Celery's consumer, reconnecting to a lost broker every 0.5-2 s instead of kombu's
    2, 4, 6 ... 30 s steps, which left a worker idle up to ~20 s after Redis was back."""

    RECONNECT = {"interval_start": 0.5, "interval_step": 0.5, "interval_max": 2.0}

    def ensure_connected(self, conn):
        ensure = conn.ensure_connection

        def ensure_quickly(*args, **kwargs):
            return ensure(*args, **{**self.RECONNECT, **kwargs})

        conn.ensure_connection = ensure_quickly
        return super().ensure_connected(conn)


def _broker_transport(url: str) -> str | None:
    """backend/broker.py's Redis transport for a plain `redis://` broker; else the URL's own."""
    return "backend.broker:Transport" if url.startswith("redis://") else None


def celery_init_app(app: Flask) -> Celery:
    """Celery the way Flask documents it: every task runs inside an app context."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    queue = app.config["AGENT_QUEUE"]
    celery.conf.update(
        broker_url=app.config["CELERY_BROKER_URL"],
        broker_transport=_broker_transport(app.config["CELERY_BROKER_URL"]),
        broker_pool_limit=app.config["CELERY_BROKER_POOL_LIMIT"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=app.config["CELERY_PREFETCH_MULTIPLIER"],
        task_send_sent_event=True,
        worker_send_task_events=True,
        task_track_started=True,
        broker_connection_retry_on_startup=True,
        worker_consumer="backend.extensions:QuickReconnectConsumer",
        # kombu's Redis channel pool holds 10 connections by default and raises past that:
        # a gevent worker acking a burst of finished tasks (a backlog drained at start)
        # logged "Couldn't ack ... MaxConnectionsError" and left them unacked.
        broker_transport_options={
            "visibility_timeout": app.config["CELERY_VISIBILITY_TIMEOUT"],
            "max_connections": app.config["CELERY_BROKER_MAX_CONNECTIONS"],
        },
        task_routes={"backend.tasks.run_agent": {"queue": queue}},
        task_default_queue="default",
        task_always_eager=app.config["CELERY_TASK_ALWAYS_EAGER"],
    )
    celery.set_default()
    celery.flask_app = app
    app.extensions["celery"] = celery
    return celery
