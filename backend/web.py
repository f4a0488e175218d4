"""Routes outside the JSON API: the visitor demo page and the metrics endpoint."""

from pathlib import Path

from flask import Flask, Response, render_template, send_from_directory
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from backend import metrics
from backend.errors import not_found
from backend.services.chat import active_workspace

STATIC_DIR = Path(__file__).resolve().parent / "static"
CHAT_ASSETS = {"chat.js", "chat.css"}
# Only same-origin scripts, styles and connections: the page has no inline code.
CHAT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' https: data:; base-uri 'none'; form-action 'self'; object-src 'none'"
)


def register_web(app: Flask) -> None:
    """Registers /metrics, the visitor demo page /chat/<handle> and its assets."""
    registry = metrics.build_registry(app)

    @app.after_request
    def _count_request(response):
        metrics.record_http_request(_method_label(), response.status_code)
        return response

    @app.get("/metrics")
    def prometheus_metrics():
        return Response(generate_latest(registry), mimetype=None, content_type=CONTENT_TYPE_PLAIN_0_0_4)

    @app.get("/chat/<handle>")
    def chat_page(handle: str):
        workspace = active_workspace(handle)
        html = render_template(
            "chat.html", handle=workspace.handle, title=workspace.public_name or workspace.name
        )
        response = Response(html, content_type="text/html; charset=utf-8")
        response.headers["Content-Security-Policy"] = CHAT_CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/static/chat/<name>")
    def chat_asset(name: str):
        if name not in CHAT_ASSETS:
            raise not_found("File")
        return send_from_directory(STATIC_DIR, name, max_age=300)


def _method_label() -> str:
    from flask import request

    # Unknown verbs would otherwise mint new label values at a client's whim.
    method = request.method
    return method if method in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"} else "OTHER"
