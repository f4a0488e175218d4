"""How every route reads its arguments: one Blueprint class with one request parser.

The parser adds to webargs' Flask parser, for every body and query string:
- JSON bodies decoded with bounds: nesting deeper than MAX_JSON_DEPTH, numbers longer
  than MAX_NUMBER_CHARS, NaN/Infinity, invalid UTF-8 or JSON -> 400 "Malformed JSON body"
  (Python's own limits would raise RecursionError or ValueError deep inside: a 500);
- a body in another format on a JSON route -> 415;
- every string (JSON keys and values, query and form values) checked against the
  storable-text rule (backend/rules/text.py) -> 422 naming the field;
- and, for every request, a chunked body that reaches MAX_CONTENT_LENGTH (or the view's own
  `body_limit`) -> 413.
Not a Blueprint module (no `blp`).
"""

import json
import math

import flask_smorest
from flask import Flask, current_app, request
from marshmallow import ValidationError
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from backend.errors import BadRequest
from backend.rules.text import UNSTORABLE_TEXT_MESSAGE, holds_unstorable_text, is_storable_text

MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 64
MALFORMED_JSON = "Malformed JSON body"


def _bounded(number_type):
    def parse(text: str):
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError("number too long")
        value = number_type(text)
        if not math.isfinite(value):
            raise ValueError("number out of range")
        return value

    return parse


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def _nesting_depth(value) -> int:
    deepest, pending = 0, [(value, 1)] if isinstance(value, dict | list) else []
    while pending:
        item, depth = pending.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def decode_json(raw: bytes):
    """The JSON value of a request body, or BadRequest("Malformed JSON body")."""
    try:
        value = json.loads(
            raw.decode("utf-8"),
            parse_int=_bounded(int),
            parse_float=_bounded(float),
            parse_constant=_no_constants,
        )
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequest(MALFORMED_JSON) from exc
    if _nesting_depth(value) > MAX_JSON_DEPTH:
        raise BadRequest(MALFORMED_JSON)
    return value


def unstorable_fields(location_data, request, location: str) -> dict[str, list[str]]:
    """Field name -> message for each argument holding text that cannot be stored."""
    if location in ("query", "querystring", "form"):
        source = request.args if location != "form" else request.form
        items = [(key, values) for key, values in source.lists()]
    elif location == "json":
        items = list(location_data.items()) if isinstance(location_data, dict) else [("_body", location_data)]
    else:
        return {}
    errors = {}
    for key, value in items:
        if not is_storable_text(key) or holds_unstorable_text(value):
            errors[key if is_storable_text(key) else "_body"] = [UNSTORABLE_TEXT_MESSAGE]
    return errors


def refuse_oversized_chunked_bodies() -> None:
    """413 for a body sent without Content-Length (chunked) that reaches the size limit.

    Werkzeug stops reading such a body at MAX_CONTENT_LENGTH without an error, so the
    request would go on with a truncated body; reading it here ends that request."""
    limit = request.max_content_length
    if request.content_length is not None or limit is None:
        return
    if not request.environ.get("wsgi.input_terminated"):
        return  # the server does not pass such bodies on: Werkzeug reads none of it
    if len(request.get_data(cache=True)) >= limit:
        raise RequestEntityTooLarge()


def body_limit(limit: int):
    """Lets a view read bodies of up to `limit` bytes instead of MAX_CONTENT_LENGTH (image
    uploads). Goes right under `@blp.route`; the limit is set before the body is read."""

    def decorator(view):
        view.max_content_length = limit
        return view

    return decorator


def apply_view_body_limit() -> None:
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    limit = getattr(view, "max_content_length", None)
    if isinstance(limit, int):
        request.max_content_length = limit


def register_body_limits(app: Flask) -> None:
    app.before_request(apply_view_body_limit)
    app.before_request(refuse_oversized_chunked_bodies)


class RequestParser(FlaskParser):
    def _raw_load_json(self, req):
        body = req.get_data(cache=True)
        if not is_json_request(req):
            if body or req.mimetype:
                raise UnsupportedMediaType()
            return core.missing
        if not body:
            return core.missing
        return decode_json(body)

    def pre_load(self, location_data, *, schema, req, location):
        errors = unstorable_fields(location_data, req, location)
        if errors:
            raise ValidationError(errors)
        return location_data


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, reading arguments with RequestParser."""

    ARGUMENTS_PARSER = RequestParser()
