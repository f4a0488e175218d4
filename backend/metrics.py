"""Prometheus metrics aggregated across processes through Redis.

Workers and web processes write small increments into Redis hashes; whichever
web process answers `GET /metrics` reads them back, so one scrape shows what
every process did. Recording never raises: metrics must not break a run.
"""

import logging
import os
import socket
import threading
import time

from flask import current_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import func, select

from backend.extensions import db, redis_client

log = logging.getLogger(__name__)

PREFIX = "metrics:"
RUNS_KEY = PREFIX + "runs_total"  # status -> count
COUNTERS_KEY = PREFIX + "counters"  # name -> count
HTTP_KEY = PREFIX + "http_requests"  # "METHOD STATUS" -> count
DURATION_KEY = PREFIX + "run_duration_seconds"  # non-cumulative bucket counts and "sum"
TTFT_KEY = PREFIX + "run_ttft_seconds"
SSE_KEY_PREFIX = PREFIX + "sse_active:"  # one integer per process, with a TTL
WEBHOOKS_KEY = PREFIX + "webhook_deliveries"  # outcome -> count
WEBHOOK_QUEUE = "webhooks"
PUSH_QUEUE = "push"  # push notifications, consumed by the same `webhooks` workers

DURATION_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
# kombu's Redis transport keeps priorities 3/6/9 in sibling lists of the queue key.
KOMBU_PRIORITY_SEP = "\x06\x16"
KOMBU_PRIORITY_STEPS = (3, 6, 9)
HTTP_FLUSH_SECONDS = 5.0
SSE_PUBLISH_SECONDS = 1.0


def _bucket_field(value: float, buckets: tuple[float, ...]) -> str:
    """The smallest bucket holding `value`: stored non-cumulative, one HINCRBY per observation."""
    for bound in buckets:
        if value <= bound:
            return repr(bound)
    return "+Inf"


def record_run_finished(
    status: str, duration_seconds: float, ttft_seconds: float | None, degraded: bool
) -> None:
    """Counts one finished run and observes its duration and time to first token."""
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.hincrby(RUNS_KEY, status, 1)
        duration = max(float(duration_seconds), 0.0)
        pipe.hincrby(DURATION_KEY, _bucket_field(duration, DURATION_BUCKETS), 1)
        pipe.hincrbyfloat(DURATION_KEY, "sum", duration)
        if ttft_seconds is not None:
            ttft = max(float(ttft_seconds), 0.0)
            pipe.hincrby(TTFT_KEY, _bucket_field(ttft, TTFT_BUCKETS), 1)
            pipe.hincrbyfloat(TTFT_KEY, "sum", ttft)
        if degraded:
            pipe.hincrby(COUNTERS_KEY, "degraded_replies", 1)
        pipe.execute()
    except Exception:  # noqa: BLE001  (metrics must never fail a run)
        log.warning("metrics: could not record a finished run", exc_info=True)


def record_events_published(count: int) -> None:
    """Adds the number of stream events one run published."""
    if count <= 0:
        return
    try:
        redis_client().hincrby(COUNTERS_KEY, "events_published", int(count))
    except Exception:  # noqa: BLE001
        log.warning("metrics: could not record published events", exc_info=True)


# --- Per-app state ------------------------------------------------------------
# Open SSE streams: each process owns one Redis key holding its current count, rewritten
# at most every SSE_PUBLISH_SECONDS after an open/close (a burst of 10,000 opens costs a
# few writes, not 10,000) and at every scrape, so the scraped value is exact. Its TTL
# outlives the longest stream (SSE_MAX_SECONDS plus slack), so a process that died without
# closing its streams stops counting once the key expires, while a live process refreshes
# it at least that often.
# HTTP requests: counted in process memory and flushed to Redis at most every few seconds,
# so a request costs no Redis round trip; the tail of a dying process may be lost.


class AppMetrics:
    """One app's in-process metric state (app.extensions["metrics"]); usable outside a
    request, e.g. from an SSE response's generator."""

    def __init__(self, app) -> None:
        config = app.config
        self.redis = app.extensions["redis"].client
        self.sse_ttl = int(config["SSE_MAX_SECONDS"] + 2 * config["SSE_HEARTBEAT_SECONDS"] + 60)
        self.sse_key = f"{SSE_KEY_PREFIX}{socket.gethostname()}:{os.getpid()}"
        self.sse_open = 0
        self._sse_lock = threading.Lock()
        self._sse_published_at = float("-inf")
        self._sse_publish_pending = False
        self._http_lock = threading.Lock()
        self._http_pending: dict[str, int] = {}
        self._http_last_flush = time.monotonic()
        self._brokers: dict[str, object] = {}

    def sse_stream_opened(self) -> None:
        self._sse_change(+1)

    def sse_stream_closed(self) -> None:
        self._sse_change(-1)

    def _sse_change(self, delta: int) -> None:
        with self._sse_lock:
            self.sse_open = max(self.sse_open + delta, 0)
            if self._sse_publish_pending:
                return  # the publish already scheduled will carry this change
            self._sse_publish_pending = True
            wait = self._sse_published_at + SSE_PUBLISH_SECONDS - time.monotonic()
        if wait <= 0:
            self._publish_sse_now()
        else:
            timer = threading.Timer(wait, self._publish_sse_now)
            timer.daemon = True
            timer.start()

    def _publish_sse_now(self) -> None:
        with self._sse_lock:
            self._sse_publish_pending = False
            self._sse_published_at = time.monotonic()
            count = self.sse_open
        self.publish_sse(count)

    def publish_sse(self, count: int) -> None:
        try:
            if count > 0:
                self.redis.set(self.sse_key, count, ex=self.sse_ttl)
            else:
                self.redis.delete(self.sse_key)
        except Exception:  # noqa: BLE001
            log.warning("metrics: could not publish the SSE stream count", exc_info=True)

    def record_http_request(self, method: str, status: int) -> None:
        field = f"{method} {status}"
        with self._http_lock:
            self._http_pending[field] = self._http_pending.get(field, 0) + 1
            if time.monotonic() - self._http_last_flush < HTTP_FLUSH_SECONDS:
                return
        self.flush_http_requests()

    def flush_http_requests(self) -> None:
        with self._http_lock:
            pending = dict(self._http_pending)
            self._http_pending.clear()
            self._http_last_flush = time.monotonic()
        if not pending:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for field, count in pending.items():
                pipe.hincrby(HTTP_KEY, field, count)
            pipe.execute()
        except Exception:  # noqa: BLE001
            log.warning("metrics: could not flush HTTP request counts", exc_info=True)

    def broker_client(self, config):
        """The broker's Redis: the app's client when it is REDIS_URL, else one of its own."""
        url = config["CELERY_BROKER_URL"]
        if url == config["REDIS_URL"]:
            return self.redis
        if url not in self._brokers:
            import redis

            self._brokers[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return self._brokers[url]


def for_app() -> AppMetrics:
    """The current app's metric state."""
    return current_app.extensions["metrics"]


def sse_stream_opened() -> None:
    for_app().sse_stream_opened()


def sse_stream_closed() -> None:
    for_app().sse_stream_closed()


def record_http_request(method: str, status: int) -> None:
    for_app().record_http_request(method, status)


def flush_http_requests() -> None:
    for_app().flush_http_requests()


# --- Collection ---------------------------------------------------------------


def _histogram(name: str, doc: str, raw: dict, buckets: tuple[float, ...]) -> HistogramMetricFamily:
    cumulative, pairs = 0, []
    for bound in buckets:
        cumulative += int(raw.get(repr(bound), 0))
        pairs.append((repr(bound), cumulative))
    cumulative += int(raw.get("+Inf", 0))
    pairs.append(("+Inf", cumulative))
    return HistogramMetricFamily(name, doc, buckets=pairs, sum_value=float(raw.get("sum", 0.0)))


def _queue_lengths(client, names: list[str]) -> dict[str, int]:
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
        for step in KOMBU_PRIORITY_STEPS:
            pipe.llen(f"{name}{KOMBU_PRIORITY_SEP}{step}")
    pipe.hlen("unacked")
    values = pipe.execute()
    width = 1 + len(KOMBU_PRIORITY_STEPS)
    depths = {name: sum(values[i * width : (i + 1) * width]) for i, name in enumerate(names)}
    depths["__unacked__"] = values[-1]
    return depths


class AssistantCollector(Collector):
    """Reads the Redis aggregates, the broker queue and the run table at scrape time."""

    def __init__(self, app) -> None:
        self.app = app

    def collect(self):
        yield from self._from_redis()
        yield from self._from_broker()
        yield from self._from_database()

    def _from_redis(self):
        up = GaugeMetricFamily("assistant_metrics_redis_up", "1 when the metrics store (Redis) answered.")
        try:
            stored = self._read_redis()
        except Exception as exc:  # noqa: BLE001  (a scrape must still answer)
            log.warning("metrics: Redis unavailable at scrape: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _redis_families(*stored)

    def _read_redis(self) -> tuple:
        """Flushes this app's counts, then reads every process's aggregates in one round trip
        (plus the SSE keys): (runs, counters, http, duration, ttft, sse_total)."""
        state = self.app.extensions["metrics"]
        state.flush_http_requests()
        state.publish_sse(state.sse_open)
        client = state.redis
        pipe = client.pipeline(transaction=False)
        for key in (RUNS_KEY, COUNTERS_KEY, HTTP_KEY, DURATION_KEY, TTFT_KEY):
            pipe.hgetall(key)
        runs, counters, http, duration, ttft = pipe.execute()
        sse_keys = list(client.scan_iter(match=SSE_KEY_PREFIX + "*", count=500))
        sse_total = sum(int(v or 0) for v in client.mget(sse_keys)) if sse_keys else 0
        return runs, counters, http, duration, ttft, sse_total

    def _from_broker(self):
        config = self.app.config
        queues = [config["AGENT_QUEUE"], "default", WEBHOOK_QUEUE, PUSH_QUEUE]
        depth = GaugeMetricFamily(
            "assistant_queue_depth", "Tasks waiting in a Celery queue.", labels=["queue"]
        )
        unacked = GaugeMetricFamily(
            "assistant_queue_unacked", "Tasks reserved by workers and not yet acknowledged."
        )
        try:
            lengths = _queue_lengths(self.app.extensions["metrics"].broker_client(config), queues)
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: broker unavailable at scrape: %s", exc)
            return
        for name in queues:
            depth.add_metric([name], lengths[name])
        unacked.add_metric([], lengths["__unacked__"])
        yield depth
        yield unacked

    def _from_database(self):
        from backend.models import AgentRun

        gauge = GaugeMetricFamily(
            "assistant_runs_current", "Agent runs in the database by status.", labels=["status"]
        )
        up = GaugeMetricFamily("assistant_database_up", "1 when the database answered the scrape.")
        try:
            with self.app.app_context():
                rows = db.session.execute(
                    select(AgentRun.status, func.count()).group_by(AgentRun.status)
                ).all()
                db.session.remove()
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: database unavailable at scrape: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for status, count in sorted(rows):
            gauge.add_metric([status], count)
        yield gauge


def _redis_families(runs, counters, http, duration, ttft, sse_total):
    """The metric families read back from Redis."""
    family = CounterMetricFamily("assistant_runs", "Finished agent runs by final status.", labels=["status"])
    for status, count in sorted(runs.items()):
        family.add_metric([status], int(count))
    yield family
    yield _histogram(
        "assistant_run_duration_seconds",
        "Agent run duration, start to finish.",
        duration,
        DURATION_BUCKETS,
    )
    yield _histogram(
        "assistant_run_ttft_seconds",
        "Time from run start to the first streamed text.",
        ttft,
        TTFT_BUCKETS,
    )
    yield CounterMetricFamily(
        "assistant_degraded_replies",
        "Replies built from workspace data because the LLM failed.",
        value=int(counters.get("degraded_replies", 0)),
    )
    yield CounterMetricFamily(
        "assistant_stream_events_published",
        "Events published to conversation streams.",
        value=int(counters.get("events_published", 0)),
    )
    yield GaugeMetricFamily(
        "assistant_sse_streams_active", "Open SSE connections across all web processes.", value=sse_total
    )
    requests = CounterMetricFamily(
        "assistant_http_requests", "HTTP requests by method and status.", labels=["method", "status"]
    )
    for field, count in sorted(http.items()):
        method, _, status = field.partition(" ")
        requests.add_metric([method, status], int(count))
    yield requests


def build_registry(app) -> CollectorRegistry:
    """Gives the app its metric state (AppMetrics) and returns the registry /metrics serves."""
    app.extensions["metrics"] = AppMetrics(app)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AssistantCollector(app))
    registry.register(WebhookCollector(app))
    return registry


# --- Webhooks -------------------------------------------------------------------
# Attempts by outcome (delivered, retrying, failed) in one Redis hash; the `webhooks`
# queue's depth is in assistant_queue_depth; deliveries waiting in the database (due
# later, or in flight) are read at scrape time.


def record_webhook_delivery(status: str) -> None:
    try:
        redis_client().hincrby(WEBHOOKS_KEY, status, 1)
    except Exception:  # noqa: BLE001
        log.warning("metrics: could not record a webhook delivery", exc_info=True)


class WebhookCollector(Collector):
    def __init__(self, app) -> None:
        self.app = app

    def collect(self):
        from backend.models import WebhookDelivery

        try:
            counts = self.app.extensions["metrics"].redis.hgetall(WEBHOOKS_KEY)
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: Redis unavailable at scrape: %s", exc)
            counts = None
        if counts is not None:
            family = CounterMetricFamily(
                "assistant_webhook_deliveries", "Webhook delivery attempts by outcome.", labels=["status"]
            )
            for status, count in sorted(counts.items()):
                family.add_metric([status], int(count))
            yield family
        try:
            with self.app.app_context():
                pending = db.session.execute(
                    select(func.count())
                    .select_from(WebhookDelivery)
                    .where(WebhookDelivery.status == "pending")
                ).scalar_one()
                db.session.remove()
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: database unavailable at scrape: %s", exc)
            return
        yield GaugeMetricFamily(
            "assistant_webhook_deliveries_pending",
            "Webhook deliveries not yet delivered or failed.",
            value=pending,
        )
