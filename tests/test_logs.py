"""JSON logs: one line per request with a request id, one per run step, nothing secret."""

import json
import logging

from celery.signals import after_setup_logger, after_setup_task_logger
from flask import Flask, Response, g

from backend.logs import JsonFormatter, configure_logging, run_log
from tests.factories import make_user


def json_lines(captured: str) -> list[dict]:
    lines = [line for line in captured.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every stdout line must be JSON


def request_lines(captured: str) -> list[dict]:
    return [line for line in json_lines(captured) if line["logger"] == "backend.request"]


def test_one_json_line_per_request_with_id_and_no_secrets(client, capsys):
    capsys.readouterr()
    response = client.get(
        "/api/v1/public/workspaces/no-such-handle?visitor_token=vt-secret-123",
        headers={"Authorization": "Bearer header.secret.jwt", "X-Request-ID": "req-abc.123"},
    )
    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "req-abc.123"
    out = capsys.readouterr().out
    (line,) = request_lines(out)
    assert line["msg"] == "request" and line["level"] == "INFO"
    assert line["request_id"] == "req-abc.123"
    assert line["method"] == "GET"
    assert line["path"] == "/api/v1/public/workspaces/no-such-handle"
    assert line["status"] == 404
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["ts"].endswith("+00:00")
    assert "vt-secret-123" not in out and "header.secret.jwt" not in out
    assert "Authorization" not in out


def test_request_id_is_generated_when_missing_or_unsafe(client, capsys):
    capsys.readouterr()
    first = client.get("/api/v1/no-such-path")
    second = client.get("/api/v1/no-such-path", headers={"X-Request-ID": "bad id\twith spaces"})
    ids = [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert all(len(i) == 32 for i in ids) and ids[0] != ids[1]
    assert [line["request_id"] for line in request_lines(capsys.readouterr().out)] == ids


def test_ids_in_the_url_are_logged_as_fields(client, capsys):
    capsys.readouterr()
    conversation_id = "4f1c2b7e-0000-4000-8000-000000000001"
    response = client.get(f"/api/v1/public/conversations/{conversation_id}/messages")
    assert response.status_code in (401, 404)
    (line,) = request_lines(capsys.readouterr().out)
    assert line["conversation_id"] == conversation_id


def test_login_request_logs_neither_password_nor_body(client, capsys):
    make_user(email="logs@example.com", password="hunter2-very-secret")
    capsys.readouterr()
    response = client.post(
        "/api/v1/login/access-token",
        data={"username": "logs@example.com", "password": "hunter2-very-secret"},
    )
    assert response.status_code == 200
    token = response.get_json()["access_token"]
    out = capsys.readouterr().out
    (line,) = request_lines(out)
    assert line["path"] == "/api/v1/login/access-token" and line["status"] == 200
    assert "hunter2-very-secret" not in out and token not in out


def test_email_in_url_is_logged_as_the_route(client, capsys):
    capsys.readouterr()
    client.post("/api/v1/password-recovery/someone.private@example.com")
    out = capsys.readouterr().out
    (line,) = request_lines(out)
    assert "someone.private" not in out
    assert line["path"] == "/api/v1/password-recovery/<email>"


def small_app() -> Flask:
    app = Flask("logs-test")
    app.config["LOG_LEVEL"] = "INFO"
    configure_logging(app)

    @app.get("/ws/<workspace_id>")
    def with_ids(workspace_id):
        g.workspace_id = workspace_id
        g.conversation_id = "conv-1"
        logging.getLogger("backend.test").info("inside the view")
        return "ok"

    @app.get("/events")
    def events():
        return Response(iter(["data: 1\n\n", "data: 2\n\n"]), mimetype="text/event-stream")

    return app


def test_view_ids_and_request_id_reach_every_line(capsys):
    client = small_app().test_client()
    capsys.readouterr()
    response = client.get("/ws/ws-42", headers={"X-Request-ID": "rid-7"})
    assert response.status_code == 200
    lines = json_lines(capsys.readouterr().out)
    inner = next(line for line in lines if line["msg"] == "inside the view")
    assert inner["request_id"] == "rid-7"
    (line,) = [line for line in lines if line["logger"] == "backend.request"]
    assert line["workspace_id"] == "ws-42" and line["conversation_id"] == "conv-1"


def test_event_stream_is_logged_when_its_body_ends(capsys):
    client = small_app().test_client()
    capsys.readouterr()
    response = client.get("/events")
    assert request_lines(capsys.readouterr().out) == []  # headers sent, body not yet read
    assert response.get_data(as_text=True) == "data: 1\n\ndata: 2\n\n"
    response.close()
    (line,) = request_lines(capsys.readouterr().out)
    assert line["path"] == "/events" and line["status"] == 200 and "duration_ms" in line


def test_run_log_stamps_the_run_ids_and_keeps_call_extras(capsys):
    capsys.readouterr()
    log = run_log("run-1", "conv-2", "ws-3")
    log.info("run.started")
    log.info("run.finished", extra={"status": "completed", "duration_ms": 812.5, "degraded": False})
    started, finished = [
        line for line in json_lines(capsys.readouterr().out) if line["logger"] == "backend.run"
    ]
    for line in (started, finished):
        assert (line["run_id"], line["conversation_id"], line["workspace_id"]) == ("run-1", "conv-2", "ws-3")
    assert started["msg"] == "run.started"
    assert finished["msg"] == "run.finished"
    assert (finished["status"], finished["duration_ms"], finished["degraded"]) == ("completed", 812.5, False)


def test_exceptions_are_one_json_line():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("here",), None)
        import sys

        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["msg"] == "failed here" and "ValueError: boom" in parsed["exc"]


def test_celery_worker_loggers_get_the_json_formatter():
    for signal in (after_setup_logger, after_setup_task_logger):
        logger = logging.getLogger(f"celery-test-{signal.name}")
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        signal.send(
            sender=None, logger=logger, loglevel=logging.INFO, logfile=None, format="", colorize=False
        )
        assert isinstance(handler.formatter, JsonFormatter)
        logger.removeHandler(handler)
