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
    return EventStreamResponse(
        events,
        status=200,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class EventStreamResponse(Response):
    """Hands the server the event generator itself (its chunks are bytes already), not
    werkzeug's encoding generator and closing wrapper around it: a parked stream's greenlet
    keeps a copy of its C stack, and each wrapper is a level of it (bench/sse_hold.py: ~3 KB
    less per held stream). Closing the body still runs the response's `call_on_close`
    callbacks (the request log line of a stream is written then)."""

    def get_app_iter(self, environ):
        if environ["REQUEST_METHOD"] == "HEAD":
            return super().get_app_iter(environ)
        return _EventBody(self.response, self._on_close)


class _EventBody:
    """Iterating it iterates the generator directly; the server closes it when done."""

    __slots__ = ("events", "on_close")

    def __init__(self, events, on_close: list):
        self.events = events
        self.on_close = on_close

    def __iter__(self):
        return iter(self.events)

    def close(self) -> None:
        try:
            self.events.close()
        finally:
            for callback in self.on_close:
                callback()
