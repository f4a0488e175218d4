"""Routes outside the JSON API (the visitor demo page, the owner's inbox page, uploaded
images under /media/, the metrics endpoint), and the security headers every response
carries."""

import hmac
from pathlib import Path

from flask import Flask, Response, current_app, render_template, request, send_from_directory
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from werkzeug.exceptions import NotFound

from backend import metrics
from backend.errors import Unauthorized, not_found
from backend.services.chat import active_workspace
from backend.services.media import CACHE_CONTROL, CONTENT_TYPES, MEDIA_URL_PATH

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_ASSETS = {"chat.js", "chat.css", "inbox.js", "inbox.css"}
# Only same-origin scripts, styles and connections: the pages have no inline code.
CHAT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' https: data:; base-uri 'none'; form-action 'self'; object-src 'none'; "
    "frame-ancestors 'none'"
)
# No page of ours is meant to be framed by another site (clickjacking).
FRAME_DENIAL = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


def register_web(app: Flask) -> None:
    """Registers /metrics, the visitor demo page /chat/<handle>, the inbox /inbox and their assets."""
    registry = metrics.build_registry(app)

    @app.after_request
    def _count_request(response):
        metrics.record_http_request(_method_label(), response.status_code)
        return response

    app.after_request(_security_headers)

    @app.get("/metrics")
    def prometheus_metrics():
        _require_metrics_token()
        return Response(generate_latest(registry), mimetype=None, content_type=CONTENT_TYPE_PLAIN_0_0_4)

    app.get("/chat/<handle>")(chat_page)
    app.get("/inbox")(inbox_page)
    app.get(MEDIA_URL_PATH + "/<path:key>")(media_file)
    app.get("/static/chat/<name>")(page_asset)


def _security_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if response.mimetype == "text/html":  # the chat page, Swagger UI
        for name, value in FRAME_DENIAL.items():
            response.headers.setdefault(name, value)
    return response


def chat_page(handle: str):
    workspace = active_workspace(handle)
    html = render_template(
        "chat.html",
        handle=workspace.handle,
        title=workspace.public_name or workspace.name,
        image_url=workspace.profile_image_url,
    )
    return _page(html)


def inbox_page():
    """The owner's inbox (static: it signs in and reads everything over the API)."""
    return _page(render_template("inbox.html"))


def _page(html: str) -> Response:
    response = Response(html, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = CHAT_CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def media_file(key: str):
    """Uploaded images kept in MEDIA_ROOT (local storage). Names are content hashes, so
    a file never changes: browsers and proxies may keep it for a year."""
    extension = key.rsplit(".", 1)[-1]
    if current_app.config.get("MEDIA_S3_BUCKET") or extension not in CONTENT_TYPES:
        raise not_found("File")
    try:
        response = send_from_directory(
            current_app.config["MEDIA_ROOT"], key, mimetype=CONTENT_TYPES[extension], max_age=None
        )
    except NotFound as exc:  # werkzeug's HTML 404 -> the API's JSON one
        raise not_found("File") from exc
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def page_asset(name: str):
    if name not in PAGE_ASSETS:
        raise not_found("File")
    return send_from_directory(STATIC_DIR, name, max_age=300)


def _require_metrics_token() -> None:
    """With METRICS_TOKEN set, a scrape must send it as a bearer token (compared in constant time)."""
    expected = current_app.config.get("METRICS_TOKEN")
    if not expected:
        return
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        raise Unauthorized("Not authenticated", headers={"WWW-Authenticate": "Bearer"})


def _method_label() -> str:
    from flask import request

    # Unknown verbs would otherwise mint new label values at a client's whim.
    method = request.method
    return method if method in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"} else "OTHER"
