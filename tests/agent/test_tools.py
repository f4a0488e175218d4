"""Tools run against the run's own AgentContext: workspaces never cross, bad input is a structured error."""

import dataclasses
import json
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import event

from backend.agent.context import BookingFacts, ServiceFacts, load_agent_context
from backend.agent.tools import TOOL_SPECS, ToolResult, execute_tool
from backend.errors import NotFound
from backend.extensions import db
from tests.agent.factories import make_connector, make_context, make_service, make_workspace
from tests.factories import make_user

LINK_A = "https://calendly.com/alpha/intro"


@pytest.fixture
def two_workspaces():
    """A has services and an active Calendly link; B has its own services and only an inactive connector."""
    a = make_workspace(handle="alpha", name="Alpha", tone="friendly", timezone="America/Santiago")
    make_service(a, "Massage", "45.00", description="Deep tissue", format="in person", duration_minutes=60)
    make_service(a, "Facial", None, sort_order=1)
    make_connector(a, LINK_A)
    b = make_workspace(handle="beta", name="Beta")
    make_service(b, "Tax review", "120.50", currency="EUR")
    make_connector(b, "https://calendly.com/beta/old", is_active=False)
    return load_agent_context(a.id), load_agent_context(b.id)


def call(ctx, name, args=None):
    return execute_tool(ctx, name, None if args is None else json.dumps(args))


def test_tool_specs_describe_the_three_tools():
    by_name = {spec["function"]["name"]: spec for spec in TOOL_SPECS}
    assert set(by_name) == {"list_services", "get_booking_link", "request_human"}
    assert all(spec["type"] == "function" for spec in TOOL_SPECS)
    assert by_name["list_services"]["function"]["parameters"]["properties"] == {}
    booking_params = by_name["get_booking_link"]["function"]["parameters"]
    assert booking_params["properties"]["service_name"]["type"] == "string"
    assert booking_params["required"] == []
    handoff_params = by_name["request_human"]["function"]["parameters"]
    assert handoff_params["properties"]["reason"]["type"] == "string"
    assert handoff_params["required"] == ["reason"]


def test_booking_link_never_crosses_workspaces(two_workspaces):
    ctx_a, ctx_b = two_workspaces
    result_a = call(ctx_a, "get_booking_link")
    result_b = call(ctx_b, "get_booking_link")
    assert result_a == ToolResult(
        "ok", {"available": True, "type": "calendly", "link": LINK_A, "service": None}, None
    )
    assert result_b == ToolResult("ok", {"available": False, "reason": "no booking link configured"}, None)
    assert LINK_A not in result_b.as_tool_message_content()
    assert "beta/old" not in result_b.as_tool_message_content()  # an inactive connector is never offered


def test_list_services_never_crosses_workspaces(two_workspaces):
    ctx_a, ctx_b = two_workspaces
    assert call(ctx_a, "list_services").data == {
        "services": [
            {
                "name": "Massage",
                "description": "Deep tissue",
                "format": "in person",
                "duration_minutes": 60,
                "starting_price": "45.00",
                "currency": "USD",
            },
            {
                "name": "Facial",
                "description": None,
                "format": None,
                "duration_minutes": None,
                "starting_price": None,
                "currency": "USD",
            },
        ]
    }
    services_b = call(ctx_b, "list_services").data["services"]
    assert [(s["name"], s["starting_price"], s["currency"]) for s in services_b] == [
        ("Tax review", "120.50", "EUR")
    ]


def test_load_agent_context_copies_the_facts(two_workspaces):
    ctx_a, _ = two_workspaces
    assert ctx_a.workspace.handle == "alpha"
    assert ctx_a.workspace.tone == "friendly" and ctx_a.workspace.timezone == "America/Santiago"
    assert ctx_a.booking == BookingFacts("calendly", LINK_A)
    assert ctx_a.services[0].starting_price == Decimal("45.00")


def test_load_agent_context_only_active_services_in_order():
    w = make_workspace()
    make_service(w, "Zumba", sort_order=0)
    make_service(w, "Aerobics", sort_order=0)
    make_service(w, "Archived", sort_order=0, is_active=False)
    make_service(w, "Advanced", sort_order=5)
    ctx = load_agent_context(w.id)
    assert [s.name for s in ctx.services] == ["Aerobics", "Zumba", "Advanced"]


def test_load_agent_context_owner_facts():
    owner = make_user(
        full_name="Ana",
        business_name="Ana SpA",
        phone="+56 9 1",
        website="https://ana.example",
        social_links={"instagram": "https://instagram.com/ana"},
    )
    ctx = load_agent_context(make_workspace(owner=owner, knowledge_base="KB text").id)
    assert ctx.owner.full_name == "Ana" and ctx.owner.business_name == "Ana SpA"
    assert ctx.owner.phone == "+56 9 1" and ctx.owner.website == "https://ana.example"
    assert ctx.owner.social_links == {"instagram": "https://instagram.com/ana"}
    assert ctx.workspace.knowledge_base == "KB text"
    assert ctx.booking is None and ctx.services == []


def test_load_agent_context_uses_few_queries_and_no_lazy_loads(two_workspaces):
    ctx_a, _ = two_workspaces
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    db.session.expire_all()
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        ctx = load_agent_context(ctx_a.workspace.id)
        db.session.close()  # nothing in ctx may need the session afterwards
        assert call(ctx, "get_booking_link").data["link"] == LINK_A
        assert [s.name for s in ctx.services] == ["Massage", "Facial"]
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert 1 <= len(statements) <= 4


def test_unknown_workspace_is_not_found():
    with pytest.raises(NotFound):
        load_agent_context(uuid.uuid4())


def test_connector_without_an_https_link_is_not_offered():
    w = make_workspace()
    make_connector(w, "http://calendly.com/plain")
    assert load_agent_context(w.id).booking is None


# ---- arguments and errors (pure: no database needed) ----

CTX = make_context(
    services=[ServiceFacts("Deep Tissue Massage"), ServiceFacts("Facial"), ServiceFacts("Masaje relajante")],
    booking=BookingFacts("square", "https://squareup.com/book/xyz"),
)


@pytest.mark.parametrize("raw", [None, "", "  ", "{}", "null"])
def test_missing_arguments_are_an_empty_object(raw):
    assert execute_tool(CTX, "get_booking_link", raw).data["link"] == "https://squareup.com/book/xyz"
    assert execute_tool(CTX, "list_services", raw).status == "ok"


@pytest.mark.parametrize(
    "raw",
    ["not json", "{broken", "[1, 2]", '"a string"', "42", '{"service_name": 5}', '{"service_name": ["x"]}'],
)
def test_bad_arguments_are_a_structured_error(raw):
    result = execute_tool(CTX, "get_booking_link", raw)
    assert result.status == "error"
    assert result.error["code"] == "bad_arguments"
    assert result.error["message"]


def test_list_services_ignores_extra_keys_but_rejects_non_objects():
    assert execute_tool(CTX, "list_services", '{"anything": 1}').status == "ok"
    assert execute_tool(CTX, "list_services", "[]").error["code"] == "bad_arguments"


def test_unknown_tool_is_a_structured_error():
    result = execute_tool(CTX, "delete_everything", "{}")
    assert result.status == "error" and result.error["code"] == "unknown_tool"
    assert "list_services" in result.error["message"]


@pytest.mark.parametrize(
    ("wanted", "matched"),
    [
        ("Facial", "Facial"),
        ("  facial ", "Facial"),
        ("deep tissue massage", "Deep Tissue Massage"),
        ("massage", "Deep Tissue Massage"),  # the only service containing it
        ("MASAJE RELAJANTE", "Masaje relajante"),
        ("masáje", "Masaje relajante"),  # accents folded
        ("", None),
    ],
)
def test_service_name_is_matched_leniently(wanted, matched):
    result = call(CTX, "get_booking_link", {"service_name": wanted})
    assert result.status == "ok"
    assert result.data["service"] == matched


def test_unknown_service_lists_the_valid_names():
    result = call(CTX, "get_booking_link", {"service_name": "Haircut"})
    assert result.status == "error" and result.error["code"] == "unknown_service"
    assert result.data == {"valid_services": ["Deep Tissue Massage", "Facial", "Masaje relajante"]}
    assert "Facial" in result.error["message"]


def test_ambiguous_service_is_unknown():
    ctx = make_context(services=[ServiceFacts("Yoga basics"), ServiceFacts("Yoga advanced")])
    assert call(ctx, "get_booking_link", {"service_name": "yoga"}).error["code"] == "unknown_service"


def test_service_name_is_not_checked_when_no_services_are_listed():
    ctx = make_context(booking=BookingFacts("calendly", "https://calendly.com/x"))
    result = call(ctx, "get_booking_link", {"service_name": "Anything"})
    assert result.data == {
        "available": True,
        "type": "calendly",
        "link": "https://calendly.com/x",
        "service": None,
    }


def test_tool_message_content_is_json_of_the_result():
    result = call(CTX, "get_booking_link", {"service_name": "Facial"})
    assert json.loads(result.as_tool_message_content()) == {
        "status": "ok",
        "data": {
            "available": True,
            "type": "square",
            "link": "https://squareup.com/book/xyz",
            "service": "Facial",
        },
        "error": None,
    }
    error = execute_tool(CTX, "nope", None)
    assert json.loads(error.as_tool_message_content())["error"]["code"] == "unknown_tool"


def _with_handoff_mode(ctx, mode: str):
    return dataclasses.replace(ctx, workspace=dataclasses.replace(ctx.workspace, handoff_mode=mode))


def test_request_human_cleans_the_reason_and_says_what_happens_next():
    result = call(make_context(), "request_human", {"reason": "  Wants to\n talk about   a refund "})
    assert result.status == "ok" and result.error is None
    assert result.data["requested"] is True
    assert result.data["reason"] == "Wants to talk about a refund"
    assert "keep helping" in result.data["next_step"]

    paused = call(_with_handoff_mode(make_context(), "pause"), "request_human", {"reason": "refund"})
    assert "stops answering" in paused.data["next_step"]


@pytest.mark.parametrize("args", [None, {}, {"reason": ""}, {"reason": "   "}, {"reason": None}])
def test_request_human_without_a_reason_uses_the_default(args):
    result = call(make_context(), "request_human", args)
    assert result.status == "ok"
    assert result.data["reason"] == "The visitor asked to talk to a person."


def test_request_human_caps_the_reason_and_refuses_a_non_string():
    long = call(make_context(), "request_human", {"reason": "x" * 2000})
    assert long.data["reason"] == "x" * 500
    bad = call(make_context(), "request_human", {"reason": ["a person"]})
    assert bad.status == "error" and bad.error["code"] == "bad_arguments"
