"""Random JSON at the body of every write route (POST/PUT/PATCH under /api/v1, taken from the
URL map): nested objects and lists, huge integers, floats with NaN and Infinity, booleans,
null, and text with lone surrogates, NUL, bidi controls and other scripts' digits, as whole
bodies and as the values of the route's own fields.

Every answer must be a non-5xx; a 4xx is JSON with a string `detail` and leaves every table
exactly as it was; a 2xx never took a non-integer for a field the OpenAPI document types
`integer`. Each route is called with the credentials it needs (owner, superuser for the
user admin routes, visitor token for public conversations) and real ids in its path.
"""

import json
import logging
import math
import os
import re
import traceback

import hypothesis.strategies as st
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from sqlalchemy import text

from backend.extensions import db
from tests.fuzz.world import transaction_snapshot

API = "/api/v1"
WRITE_METHODS = ("POST", "PUT", "PATCH")
EXAMPLES_PER_ROUTE = int(os.environ.get("FUZZ_BODY_EXAMPLES", "60"))
# The same inputs on every run; FUZZ_SEED=<n> draws other ones.
SEED = int(os.environ.get("FUZZ_SEED", "20261202"))
SUPERUSER_PATHS = re.compile(r"^/api/v1/users/(\{user_id\})?$")

# Text that has broken servers: lone surrogates (not encodable in UTF-8), NUL (PostgreSQL
# text cannot hold it), bidi and zero-width controls, other scripts' digits, a BOM.
NASTY_TEXT = [
    "\ud800",
    "\udfff",
    "a\udc80b",
    "\x00",
    "a\x00b",
    "\u202e",
    "\u2066evil\u2069",
    "\u200b",
    "\ufeff",
    "١٢",
    "１２",
    "𝟙𝟚",
    "",
    " ",
    "NaN",
    "Infinity",
    "-0",
    "1e400",
    "9" * 400,
]
HUGE_NUMBERS = [2**31, -(2**31) - 1, 2**63, 2**64, 10**400]


class Digits(str):
    """A JSON integer too long for Python's int <-> str conversion (4300 digits), sent as is."""


LONG_INTEGERS = [Digits("1" + "0" * 5000), Digits("-" + "9" * 4400)]
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 1e308, -0.0, 1.5, 5e-324]

texts = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=20),
    st.sampled_from(NASTY_TEXT),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_NUMBERS),
    st.sampled_from(LONG_INTEGERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(SPECIAL_FLOATS),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(texts, children, max_size=4),
    ),
    max_leaves=12,
)


def _encode(value, ascii_only: bool) -> bytes:
    """JSON text of `value`: with \\u escapes, or raw (lone surrogates then make invalid UTF-8)."""
    long_integers = []

    def placeholders(item):
        if isinstance(item, Digits):
            long_integers.append(str.__str__(item))
            return f"\x01{len(long_integers) - 1}\x01"
        if isinstance(item, dict):
            return {key: placeholders(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [placeholders(inner) for inner in item]
        return item

    encoded = json.dumps(placeholders(value), ensure_ascii=ascii_only, allow_nan=True)
    for i, digits in enumerate(long_integers):
        encoded = encoded.replace(json.dumps(f"\x01{i}\x01", ensure_ascii=ascii_only), digits, 1)
    return encoded.encode("utf-8", "surrogatepass")


def _deep(levels: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * levels + b"]" * levels
    return b'{"a":' * levels + b"1" + b"}" * levels


def bodies(field_names: list[str]):
    """(raw bytes, decoded value or None) pairs: whole random values, the route's own fields
    with random (mostly nasty) values, and bodies Python's json module cannot take apart safely."""
    field_value = st.one_of(
        st.sampled_from(NASTY_TEXT),
        st.sampled_from(NASTY_TEXT).map(lambda nasty: f"ok{nasty}ok"),
        json_values,
    )
    own_fields = (
        st.fixed_dictionaries({}, optional={name: field_value for name in field_names})
        if field_names
        else json_values
    )
    as_json = st.tuples(st.one_of(json_values, own_fields, own_fields), st.booleans()).map(
        lambda pair: (_encode(pair[0], ascii_only=pair[1]), pair[0])
    )
    raw = st.one_of(
        st.builds(_deep, st.integers(min_value=30, max_value=3000), st.sampled_from(["list", "dict"])),
        st.integers(min_value=300, max_value=6000).map(lambda n: ("9" * n).encode()),
        st.sampled_from(RAW_BODIES),
    ).map(lambda raw_body: (raw_body, None))
    return st.one_of(as_json, as_json, as_json, raw)


# Always sent, to every route: each of these as the value of each of the route's fields, and
# these whole bodies.
FIELD_VALUES = ["\ud800", "a\x00b", "\u202eabc", "١٢", 1.5, True, 10**400, LONG_INTEGERS[0], math.nan, [], {}]
RAW_BODIES = [b"", b"{", b'{"a": }', b"\xff\xfe", b"\xed\xa0\x80", b"NaN", b"[1,]", b'{"a":1}x']
WHOLE_BODIES = [None, 1, -1.5, True, "x", [], {}, LONG_INTEGERS[0], math.inf]


def explicit_bodies(field_names: list[str]) -> list[tuple[bytes, object]]:
    values = [{name: bad} for name in field_names for bad in FIELD_VALUES] + WHOLE_BODIES
    return [(_encode(value, ascii_only=True), value) for value in values] + [
        (_deep(1000, "list"), None),
        (_deep(1000, "dict"), None),
        *((raw, None) for raw in RAW_BODIES),
    ]


# --- what the tables hold -------------------------------------------------------------------


def fingerprint() -> dict:
    """One digest per table of everything in it (rows and values)."""
    db.session.rollback()
    tables = [t.name for t in db.metadata.sorted_tables]
    selects = ", ".join(
        f"(SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{name}\" t)"
        for name in tables
    )
    row = db.session.execute(text(f"SELECT {selects}")).one()
    db.session.rollback()
    return dict(zip(tables, row, strict=True))


class Tables:
    """`digests()` is `fingerprint()`, hashed again only when the transaction snapshot moved
    (something may have been written). A write by something else (autovacuum's ANALYZE)
    only costs a needless hash, never a missed write."""

    def __init__(self) -> None:
        self._snapshot: str | None = None
        self._digests: dict = {}

    def digests(self) -> dict:
        snapshot = transaction_snapshot()
        if snapshot != self._snapshot:
            self._digests, self._snapshot = fingerprint(), snapshot
        return self._digests


TABLES = Tables()


# --- the routes -----------------------------------------------------------------------------


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


def write_routes(app) -> list[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API + "/"):
            continue
        for method in rule.methods or ():
            if method in WRITE_METHODS:
                routes.add((method, rule.rule))
    return sorted(routes, key=lambda route: (route[1], route[0]))


def body_fields(spec: dict, path: str, method: str) -> tuple[list[str], set[str]]:
    """The field names of the route's JSON body, and those the document types `integer`."""
    operation = spec["paths"].get(path, {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    schema = next(iter(content.values()), {}).get("schema", {})
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    properties = schema.get("properties", {})
    integers = {name for name, prop in properties.items() if prop.get("type") == "integer"}
    return sorted(properties), integers


def role_for(path: str) -> str:
    if path.startswith(f"{API}/public/conversations/"):
        return "visitor"
    return "superuser" if SUPERUSER_PATHS.match(path) else "owner"


def credentials(world, role: str) -> dict:
    if role == "visitor":
        return {"X-Visitor-Token": world.visitor_token}
    return {"Authorization": f"Bearer {world.token(role)}"}


def concrete_url(world, rule: str, role: str) -> str:
    ids = world.path_ids(role)

    def value(match) -> str:
        name = match.group(1)
        return ids[name][0] if name in ids else "x"

    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", value, rule)


def _is_integer(value) -> bool:
    return isinstance(value, Digits) or (isinstance(value, int) and not isinstance(value, bool))


class ServerErrors(logging.Handler):
    """Keeps the exceptions behind 500s (errors.py logs each one with its traceback)."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)

    def last_cause(self) -> str:
        if not self.records:
            return "no exception logged"
        _type, error, tb = self.records[-1].exc_info
        frames = traceback.extract_tb(tb)
        ours = [f for f in frames if "/backend/" in f.filename]
        frame = (ours or frames)[-1]
        where = "backend/" + frame.filename.split("/backend/")[-1] if ours else frame.filename
        return f"{type(error).__name__} at {where}:{frame.lineno}"


class Problems:
    """Distinct failure classes, each with the shortest body that showed it."""

    def __init__(self):
        self.found: dict[tuple, bytes] = {}

    def add(self, method: str, path: str, what: str, raw: bytes) -> None:
        key = (path, method, what)
        if key not in self.found or len(raw) < len(self.found[key]):
            self.found[key] = raw

    def report(self) -> str:
        return "\n".join(
            f"{method} {path}: {what}; e.g. body {raw[:160]!r}{'...' if len(raw) > 160 else ''}"
            for (path, method, what), raw in sorted(self.found.items())
        )


def _error_problems(response, before: dict) -> list[str]:
    """What is wrong with a 4xx: no JSON `detail`, or a table it changed."""
    status, found = response.status_code, []
    payload = response.get_json(silent=True)
    if not (isinstance(payload, dict) and isinstance(payload.get("detail"), str)):
        found.append(f"{status} without a JSON detail")
    after = TABLES.digests()
    changed = sorted(table for table in before if before[table] != after[table])
    if changed:
        found.append(f"{status} but wrote to {changed}")
    return found


def _integer_problems(status: int, value: dict, integer_fields) -> list[str]:
    """Integer fields a 2xx accepted with something that is not an integer."""
    return [
        f"{status}: took {type(value[name]).__name__} for integer {name}"
        for name in sorted(integer_fields)
        if name in value and value[name] is not None and not _is_integer(value[name])
    ]


def response_problems(response, value, before: dict, content_type: str, reads_json: bool, integer_fields):
    """Everything wrong with the answer to one hostile body (below 500)."""
    status, found = response.status_code, []
    if reads_json and content_type != "application/json" and status != 415:
        found.append(f"{status}, not 415, for a {content_type} body")
    if status >= 400:
        found.extend(_error_problems(response, before))
    elif isinstance(value, dict) and content_type == "application/json":
        found.extend(_integer_problems(status, value, integer_fields))
    return found


def check_route(client, world, spec, method: str, rule: str, count, problems: Problems, errors: ServerErrors):
    path = openapi_path(rule)
    field_names, integer_fields = body_fields(spec, path, method)
    operation = spec["paths"].get(path, {}).get(method.lower(), {})
    reads_json = "application/json" in operation.get("requestBody", {}).get("content", {})
    role = role_for(path)
    url = concrete_url(world, rule, role)

    def check(response, raw: bytes, value, before: dict, content_type: str) -> None:
        if response.status_code >= 500:
            problems.add(method, path, f"{response.status_code} ({errors.last_cause()})", raw)
            return
        for problem in response_problems(response, value, before, content_type, reads_json, integer_fields):
            problems.add(method, path, problem, raw)

    @settings(
        max_examples=EXAMPLES_PER_ROUTE,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )
    @seed(SEED)
    @given(body=bodies(field_names), content_type=st.sampled_from(["application/json"] * 5 + ["text/plain"]))
    def exercise(body, content_type):
        raw, value = body
        before = TABLES.digests()
        headers = {**credentials(world, role), "Content-Type": content_type}
        response = client.open(url, method=method, data=raw, headers=headers)
        count("hostile", f"{method} {path}", response.status_code)
        try:
            check(response, raw, value, before, content_type)
        finally:
            if response.status_code < 400:
                world.restore()

    for body in explicit_bodies(field_names):
        exercise = example(body=body, content_type="application/json")(exercise)
    exercise = example(body=(b"{}", {}), content_type="text/plain")(exercise)
    exercise()


def test_write_routes_survive_hostile_bodies(app, client, world, short_streams, request_counter):
    spec = client.get(f"{API}/openapi.json").get_json()
    routes = write_routes(app)
    assert len(routes) >= 20, routes
    problems, errors = Problems(), ServerErrors()
    logging.getLogger("backend").addHandler(errors)
    try:
        for method, rule in routes:
            check_route(client, world, spec, method, rule, request_counter, problems, errors)
            world.restore()
    finally:
        logging.getLogger("backend").removeHandler(errors)
    assert not problems.found, (
        f"{len(problems.found)} failure classes on {len(routes)} write routes:\n{problems.report()}"
    )
