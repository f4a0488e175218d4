"""Human handoff with real processes (gunicorn gevent web, Celery worker, PostgreSQL,
Redis): the owner takes over while a reply streams, answers, and hands back; the agent
asks for a person and, in `pause` mode, stops answering."""

import requests

from tests.e2e.chat import Visitor, after_deltas, is_end_of, names, owner_headers, text_of
from tests.factories import make_workspace
from tests.fake_groq import Reply


def _owner_post(stack, workspace, path: str, **kwargs) -> requests.Response:
    return requests.post(stack.api(path), headers=owner_headers(stack, workspace.owner), timeout=10, **kwargs)


def test_takeover_while_a_reply_streams_then_the_owner_answers_and_hands_back(stack, groq):
    workspace = make_workspace()
    groq.default = Reply.tokens(300, delay=0.02)
    visitor = Visitor(stack, workspace.handle)
    posted = visitor.send("Tell me everything")
    run_id = posted["run"]["id"]
    stream = visitor.stream(posted["stream_cursor"])
    try:
        events = stream.events_until(after_deltas(5))
        took = _owner_post(stack, workspace, f"/conversations/{visitor.conversation_id}/takeover")
        assert took.status_code == 200, took.text
        assert took.json()["agent_mode"] == "paused"
        events += stream.events_until(lambda e: e.event == "agent_mode")
        events += stream.events_until(is_end_of(run_id)) if not _ended(events, run_id) else []

        # Paused: the visitor's message is saved, no run; the owner's answer arrives live.
        waiting = visitor.post("Hello? Is a person there?")
        assert waiting.status_code == 201 and waiting.json()["run"] is None
        answer = _owner_post(
            stack,
            workspace,
            f"/messages/conversations/{visitor.conversation_id}",
            json={"content": "Hi, this is Marta from the studio."},
        )
        assert answer.status_code in (200, 201), answer.text
        owner_event = stream.events_until(lambda e: e.event == "message")[-1]
        assert owner_event.data["role"] == "owner"
        assert owner_event.data["content"] == "Hi, this is Marta from the studio."

        released = _owner_post(stack, workspace, f"/conversations/{visitor.conversation_id}/release")
        assert released.status_code == 200 and released.json()["agent_mode"] == "auto"
        back = stream.events_until(lambda e: e.event == "agent_mode")[-1]
        assert back.data == {"mode": "auto", "by": "owner"}
    finally:
        stream.close()

    end = next(e for e in events if e.event == "message_end" and e.data["run_id"] == run_id)
    assert end.data["status"] == "cancelled"
    run_text = text_of([e for e in events if e.data.get("run_id") == run_id])
    assert end.data["full_text"] == run_text and 0 < len(run_text)
    mode = next(e for e in events if e.event == "agent_mode")
    assert mode.data == {"mode": "paused", "by": "owner"}
    run = visitor.wait_run(run_id)
    assert run["status"] == "cancelled"

    # Handed back: the next message starts a run whose history holds the owner's answer.
    groq.default = Reply.echo()
    before = len(groq.requests)
    next_post = visitor.send("Thanks Marta. And the prices?")
    assert next_post["run"] is not None
    visitor.wait_run(next_post["run"]["id"])
    request = groq.requests[before]
    contents = [m.get("content") or "" for m in request["messages"]]
    assert any("Hi, this is Marta from the studio." in c for c in contents)
    assert any("Hello? Is a person there?" in c for c in contents)
    roles = [m["role"] for m in visitor.messages()]
    assert roles == ["user", "assistant", "user", "owner", "user", "assistant"]


def _ended(events, run_id) -> bool:
    return any(e.event == "message_end" and e.data.get("run_id") == run_id for e in events)


def test_the_agent_asks_for_a_person_and_in_pause_mode_stops_answering(stack, groq):
    workspace = make_workspace(handoff_mode="pause")
    groq.when(
        "a person",
        Reply.tool_call("request_human", {"reason": "Wants to discuss a refund"}),
        once=True,
    )
    groq.when("", Reply.text("I've asked someone from the team to join."), stage="tool", once=True)
    visitor = Visitor(stack, workspace.handle)
    posted = visitor.send("I need a person for a refund")
    run_id = posted["run"]["id"]
    stream = visitor.stream(posted["stream_cursor"])
    try:
        events = stream.events_until(is_end_of(run_id))
    finally:
        stream.close()

    order = [n for n in names(events) if n != "delta"]
    assert order == ["message_start", "tool_call", "tool_result", "handoff", "agent_mode", "message_end"]
    handoff = next(e for e in events if e.event == "handoff")
    assert handoff.data == {"status": "requested", "reason": "Wants to discuss a refund"}
    assert next(e for e in events if e.event == "agent_mode").data == {"mode": "paused", "by": "agent"}
    assert events[-1].data["full_text"] == "I've asked someone from the team to join."

    conversation = requests.get(
        stack.api(f"/conversations/{visitor.conversation_id}"),
        headers=owner_headers(stack, workspace.owner),
        timeout=10,
    ).json()
    assert conversation["agent_mode"] == "paused"
    assert conversation["handoff_reason"] == "Wants to discuss a refund"
    assert conversation["handoff_requested_at"]
    waiting = requests.get(
        stack.api(f"/conversations/workspaces/{workspace.id}"),
        params={"handoff": "requested"},
        headers=owner_headers(stack, workspace.owner),
        timeout=10,
    ).json()
    assert [c["id"] for c in waiting["data"]] == [visitor.conversation_id]
    # Paused by the agent: the next visitor message waits for a person.
    assert visitor.post("hello?").json()["run"] is None
