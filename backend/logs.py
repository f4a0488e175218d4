"""JSON logs on stdout: one object per line, one line per request and per run step.

Request lines carry method, path (never the query string: visitor tokens travel
there), status and duration; nothing at INFO carries headers, bodies, tokens or
passwords. `run_log()` gives the worker an adapter that stamps every line with
the run's ids, and Celery's own loggers are switched to the same format.
"""

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, g, has_request_context, request

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {
    "message",
    "asctime",
    "taskName",
}
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # used with fullmatch
# URL parts that are personal data or credentials: logged as their rule name.
_REDACTED_VIEW_ARGS = frozenset({"email", "token"})
_QUIET_PATHS = frozenset({"/metrics"})


class JsonFormatter(logging.Formatter):
    """ts, level, logger, msg, then any extra fields, as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if "request_id" not in entry and has_request_context():
            request_id = g.get("request_id")
            if request_id:
                entry["request_id"] = request_id
        if "task_id" not in entry:
            entry.update(_current_task_fields())
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _current_task_fields() -> dict:
    try:
        from celery._state import get_current_task
    except ImportError:  # pragma: no cover
        return {}
    task = get_current_task()
    if task is None or task.request.id is None:
        return {}
    return {"task_id": task.request.id, "task_name": task.name}


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is now (test capture swaps it), not the one at setup."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(app: Flask) -> None:
    """Root logger -> JSON on stdout, request ids and one INFO line per request."""
    level = str(app.config["LOG_LEVEL"]).upper()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StdoutHandler):
            root.removeHandler(handler)
    handler = _StdoutHandler()
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    _connect_celery_signals()

    app.before_request(_start_request)
    app.after_request(_finish_request)


def _start_request() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _loggable_path() -> str:
    args = request.view_args or {}
    if request.url_rule is not None and _REDACTED_VIEW_ARGS & args.keys():
        return request.url_rule.rule
    return request.path


def _finish_request(response):
    request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers["X-Request-ID"] = request_id
    started = g.get("request_started", time.perf_counter())
    fields = {
        "request_id": request_id,
        "method": request.method,
        "path": _loggable_path(),
        "status": response.status_code,
    }
    view_args = request.view_args or {}
    for name in ("workspace_id", "conversation_id", "run_id"):
        # A view may set g.<name> after its lookups; else the id from the URL, if any.
        value = g.get(name, view_args.get(name))
        if value is not None:
            fields[name] = str(value)
    level = logging.DEBUG if request.path in _QUIET_PATHS else logging.INFO
    request_log = logging.getLogger("backend.request")
    if response.is_streamed and response.mimetype == "text/event-stream":
        # A stream's duration is known only when its body ends.
        def _on_close() -> None:
            fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
            request_log.log(level, "request", extra=fields)

        response.call_on_close(_on_close)
    else:
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        request_log.log(level, "request", extra=fields)
    return response


class RunLogAdapter(logging.LoggerAdapter):
    """Merges the run's ids with each call's own `extra` (3.11's adapter would drop the latter)."""

    def process(self, msg, kwargs):
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def run_log(run_id, conversation_id, workspace_id) -> logging.LoggerAdapter:
    ids = {
        "run_id": str(run_id),
        "conversation_id": str(conversation_id),
        "workspace_id": str(workspace_id),
    }
    return RunLogAdapter(logging.getLogger("backend.run"), ids)


def _json_handlers(logger: logging.Logger, **_kwargs) -> None:
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())


_celery_connected = False


def _connect_celery_signals() -> None:
    """Celery installs its own handlers at worker start; give them the JSON formatter."""
    global _celery_connected
    if _celery_connected:
        return
    from celery.signals import after_setup_logger, after_setup_task_logger

    after_setup_logger.connect(_celery_logger_ready, weak=False)
    after_setup_task_logger.connect(_celery_logger_ready, weak=False)
    _celery_connected = True


def _celery_logger_ready(sender=None, logger=None, **kwargs) -> None:
    if logger is not None:
        _json_handlers(logger)
