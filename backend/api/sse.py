"""The one shape of an event-stream answer (the visitor's conversation stream and the
owner's inbox): the tail of one Redis stream as Server-Sent Events, opened with `resync`
when the client's cursor could not be honoured."""

from flask import Response, current_app, request

from backend import metrics
from backend.extensions import db
from backend.stream_tail import format_event, get_hub, sse_events, stuck_client_guard
from backend.streams import encode


def event_stream_response(key: str, cursor: str, resync_reason: str | None) -> Response:
    """Streams `key` after `cursor`. Everything the stream needs is known by now, so the
    database connection is given back before the request is held open for minutes."""
    config = current_app.config
    first = None
    if resync_reason:
        first = format_event(cursor, "resync", encode({"reason": resync_reason}))
    db.session.remove()
    events = sse_events(
        get_hub(),
        key,
        cursor,
        config["SSE_HEARTBEAT_SECONDS"],
        config["SSE_MAX_SECONDS"],
        first_event=first,
        gauge=metrics.for_app(),
        max_pending=config["SSE_MAX_PENDING_ENTRIES"],
        on_overflow=stuck_client_guard(request.environ, config["SSE_SEND_BUFFER_BYTES"]),
    )
    return Response(
        events,
        status=200,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
