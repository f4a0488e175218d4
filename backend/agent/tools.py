"""The three tools the model may call, executed only against the run's own AgentContext.

A tool never touches the database: it reads the context loaded for this run's
workspace, so one workspace's data cannot leak into another's conversation.
Every failure (unknown tool, malformed arguments, unknown service) comes back
as a structured `ToolResult` with status "error", never as an exception, so
the model can read it and recover.
"""

import json
from dataclasses import asdict, dataclass

from backend.agent.context import AgentContext, ServiceFacts
from backend.rules.folding import fold
from backend.rules.handoff import clean_reason

NO_BOOKING_REASON = "no booking link configured"
REQUEST_HUMAN = "request_human"

TOOL_SPECS: list[dict] = [
    {
        "type": "function",
        "function": {
            "name": "list_services",
            "description": "List the business's currently offered services with description, format, "
            "duration in minutes and starting price.",
            "parameters": {"type": "object", "properties": {}, "required": []},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_booking_link",
            "description": "Get the business's online booking link, to share when the visitor wants to "
            "book, schedule or check availability.",
            "parameters": {
                "type": "object",
                "properties": {
                    "service_name": {
                        "type": "string",
                        "description": "Optional: the name of the service the visitor wants to book.",
                    }
                },
                "required": [],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": REQUEST_HUMAN,
            "description": "Ask a person from the business to join this chat: use it when the visitor "
            "asks for a person, or when you cannot help with their request.",
            "parameters": {
                "type": "object",
                "properties": {
                    "reason": {
                        "type": "string",
                        "description": "In one sentence, what the visitor needs from a person.",
                    }
                },
                "required": ["reason"],
            },
        },
    },
]


@dataclass
class ToolResult:
    status: str  # "ok" | "error"
    data: dict | list | None = None
    error: dict | None = None  # {"code", "message"} when status == "error"

    def as_dict(self) -> dict:
        return asdict(self)

    def as_tool_message_content(self) -> str:
        """The JSON the model reads back as the `tool` message."""
        return json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":"))


def ok(data: dict | list) -> ToolResult:
    return ToolResult(status="ok", data=data)


def error(code: str, message: str, data: dict | list | None = None) -> ToolResult:
    return ToolResult(status="error", data=data, error={"code": code, "message": message})


def execute_tool(ctx: AgentContext, name: str, raw_arguments: str | None) -> ToolResult:
    """Runs tool `name` with the model's raw JSON arguments against `ctx` only."""
    handler = _HANDLERS.get(name)
    if handler is None:
        return error("unknown_tool", f"Unknown tool {name!r}. Available tools: {', '.join(_HANDLERS)}.")
    args = _parse_arguments(raw_arguments)
    if isinstance(args, ToolResult):
        return args
    return handler(ctx, args)


def _parse_arguments(raw: str | None) -> dict | ToolResult:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if not isinstance(raw, str):
        return error("bad_arguments", "Arguments must be a JSON object.")
    try:
        args = json.loads(raw)
    except ValueError:
        return error("bad_arguments", "Arguments are not valid JSON; send a JSON object.")
    if args is None:
        return {}
    if not isinstance(args, dict):
        return error("bad_arguments", "Arguments must be a JSON object.")
    return args


def _list_services(ctx: AgentContext, args: dict) -> ToolResult:
    # No parameters: extra keys a model sometimes adds are harmless and ignored.
    return ok({"services": [_service_data(s) for s in ctx.services]})


def _get_booking_link(ctx: AgentContext, args: dict) -> ToolResult:
    service_name = args.get("service_name")
    if service_name is not None and not isinstance(service_name, str):
        return error("bad_arguments", "service_name must be a string.")
    matched = None
    # With no services listed there is nothing to check a name against; the link still applies.
    if service_name and service_name.strip() and ctx.services:
        matched = _match_service(ctx.services, service_name)
        if matched is None:
            names = [s.name for s in ctx.services]
            return error(
                "unknown_service",
                f"No service named {service_name!r}. Valid services: {', '.join(names)}.",
                data={"valid_services": names},
            )
    if ctx.booking is None:
        return ok({"available": False, "reason": NO_BOOKING_REASON})
    return ok(
        {
            "available": True,
            "type": ctx.booking.type,
            "link": ctx.booking.link,
            "service": matched.name if matched else None,
        }
    )


def _request_human(ctx: AgentContext, args: dict) -> ToolResult:
    """Only validates: the run records the request (services/handoff.py) when this is ok."""
    reason = args.get("reason")
    if reason is not None and not isinstance(reason, str):
        return error("bad_arguments", "reason must be a string.")
    reason = clean_reason(reason)
    if ctx.workspace.handoff_mode == "pause":
        next_step = (
            "A person from the business has been notified and will answer in this chat. "
            "Tell the visitor so; the assistant stops answering after this reply."
        )
    else:
        next_step = (
            "A person from the business has been notified and will join this chat. "
            "Tell the visitor so, and keep helping meanwhile."
        )
    return ok({"requested": True, "reason": reason, "next_step": next_step})


def _match_service(services: list[ServiceFacts], wanted: str) -> ServiceFacts | None:
    """Exact name (ignoring case, accents and spacing), else the one service the name contains or is in."""
    key = _normalize(wanted)
    exact = [s for s in services if _normalize(s.name) == key]
    if exact:
        return exact[0]
    partial = [s for s in services if key in _normalize(s.name) or _normalize(s.name) in key]
    return partial[0] if len(partial) == 1 else None


def _normalize(text: str) -> str:
    return " ".join(fold(text).split())


def _service_data(s: ServiceFacts) -> dict:
    return {
        "name": s.name,
        "description": s.description,
        "format": s.format,
        "duration_minutes": s.duration_minutes,
        "starting_price": f"{s.starting_price:.2f}" if s.starting_price is not None else None,
        "currency": s.currency,
    }


_HANDLERS = {
    "list_services": _list_services,
    "get_booking_link": _get_booking_link,
    REQUEST_HUMAN: _request_human,
}
