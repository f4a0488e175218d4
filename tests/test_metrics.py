"""GET /metrics: Redis-aggregated counters and histograms, queue depth, DB run gauge."""

import os
import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from backend import metrics
from backend.extensions import blocking_redis, db, redis_client
from backend.models import AgentRun
from tests.factories import make_conversation, make_message, make_workspace


def scrape(client) -> dict:
    """{(sample name, frozenset(labels)): value} of one scrape."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture(autouse=True)
def _no_open_streams(app):
    yield
    while app.extensions["metrics"].sse_open:
        metrics.sse_stream_closed()


def test_runs_histograms_and_counters_are_read_back_from_redis(client):
    metrics.record_run_finished("completed", 1.5, 0.3, False)
    metrics.record_run_finished("completed", 0.2, 0.05, False)
    metrics.record_run_finished("failed", 400.0, None, True)
    metrics.record_events_published(10)
    metrics.record_events_published(5)
    metrics.record_events_published(0)

    s = scrape(client)
    assert value(s, "assistant_runs_total", status="completed") == 2
    assert value(s, "assistant_runs_total", status="failed") == 1
    assert value(s, "assistant_degraded_replies_total") == 1
    assert value(s, "assistant_stream_events_published_total") == 15

    # Cumulative buckets: 0.2 <= 0.5, 1.5 <= 2, 400 only in +Inf.
    assert value(s, "assistant_run_duration_seconds_bucket", le="0.5") == 1
    assert value(s, "assistant_run_duration_seconds_bucket", le="1.0") == 1
    assert value(s, "assistant_run_duration_seconds_bucket", le="2.0") == 2
    assert value(s, "assistant_run_duration_seconds_bucket", le="300.0") == 2
    assert value(s, "assistant_run_duration_seconds_bucket", le="+Inf") == 3
    assert value(s, "assistant_run_duration_seconds_count") == 3
    assert value(s, "assistant_run_duration_seconds_sum") == pytest.approx(401.7)

    # A run without a first token is not observed in the TTFT histogram.
    assert value(s, "assistant_run_ttft_seconds_bucket", le="0.1") == 1
    assert value(s, "assistant_run_ttft_seconds_bucket", le="0.25") == 1
    assert value(s, "assistant_run_ttft_seconds_bucket", le="0.5") == 2
    assert value(s, "assistant_run_ttft_seconds_count") == 2
    assert value(s, "assistant_run_ttft_seconds_sum") == pytest.approx(0.35)


def test_queue_depth_follows_the_celery_queue_lists(client, app):
    queue = app.config["AGENT_QUEUE"]
    s = scrape(client)
    assert value(s, "assistant_queue_depth", queue=queue) == 0
    client_ = redis_client()
    client_.lpush(queue, "task-1", "task-2")
    client_.lpush(f"{queue}\x06\x163", "high-priority-task")
    client_.lpush("default", "other")
    client_.hset("unacked", "tag-1", "{}")
    s = scrape(client)
    assert value(s, "assistant_queue_depth", queue=queue) == 3
    assert value(s, "assistant_queue_depth", queue="default") == 1
    assert value(s, "assistant_queue_unacked") == 1


def _eventually(condition, timeout: float = 2 * metrics.SSE_PUBLISH_SECONDS + 1) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_sse_streams_are_summed_over_every_process(client, app):
    metrics.sse_stream_opened()
    metrics.sse_stream_opened()
    metrics.sse_stream_closed()
    own_key = f"{metrics.SSE_KEY_PREFIX}{socket.gethostname()}:{os.getpid()}"
    # Published within SSE_PUBLISH_SECONDS of the last change (coalesced), exact at scrape.
    assert _eventually(lambda: redis_client().get(own_key) == "1")
    expected_ttl = app.config["SSE_MAX_SECONDS"] + 2 * app.config["SSE_HEARTBEAT_SECONDS"] + 60
    assert 0 < redis_client().ttl(own_key) <= expected_ttl
    # Another web process (another host) reports its own count under its own key.
    redis_client().set(f"{metrics.SSE_KEY_PREFIX}web-2:4242", 3, ex=60)
    assert value(scrape(client), "assistant_sse_streams_active") == 4

    metrics.sse_stream_closed()
    assert _eventually(lambda: redis_client().get(own_key) is None)
    assert value(scrape(client), "assistant_sse_streams_active") == 3


def test_current_runs_by_status_come_from_the_database(client):
    conversation = make_conversation(make_workspace())
    for status in ("queued", "completed", "completed", "failed"):
        message = make_message(conversation, content=f"hi {status}")
        db.session.add(AgentRun(conversation_id=conversation.id, user_message_id=message.id, status=status))
    db.session.commit()
    s = scrape(client)
    assert value(s, "assistant_runs_current", status="completed") == 2
    assert value(s, "assistant_runs_current", status="queued") == 1
    assert value(s, "assistant_runs_current", status="failed") == 1
    assert ("assistant_runs_current", frozenset({("status", "running")})) not in s


def test_http_requests_are_counted_by_method_and_status(client):
    metrics.flush_http_requests()
    before = scrape(client)
    client.get("/api/v1/no-such-path")
    client.get("/api/v1/no-such-path")
    client.open("/metrics", method="BREW")
    after = scrape(client)

    def delta(**labels):
        key = ("assistant_http_requests_total", frozenset(labels.items()))
        return after.get(key, 0) - before.get(key, 0)

    assert delta(method="GET", status="404") == 2
    assert delta(method="OTHER", status="405") == 1
    # the first scrape itself was counted before the second one was taken
    assert delta(method="GET", status="200") >= 1


def test_recording_never_raises_and_scrape_answers_without_redis(app, client, monkeypatch, caplog):
    # Built the way the app builds its client (a bare redis.Redis would retry each refused
    # command with backoff for seconds).
    dead = blocking_redis("redis://127.0.0.1:1/0", 2, socket_connect_timeout=0.2)
    monkeypatch.setattr(metrics, "redis_client", lambda: dead)
    monkeypatch.setattr(app.extensions["metrics"], "redis", dead)
    metrics.record_run_finished("completed", 1.0, 0.1, False)
    metrics.record_events_published(3)
    metrics.sse_stream_opened()
    metrics.sse_stream_closed()
    assert "could not record a finished run" in caplog.text

    s = scrape(client)
    assert value(s, "assistant_metrics_redis_up") == 0
    monkeypatch.undo()
    assert value(scrape(client), "assistant_metrics_redis_up") == 1
    # nothing was recorded while Redis was away
    assert ("assistant_runs_total", frozenset({("status", "completed")})) not in scrape(client)
