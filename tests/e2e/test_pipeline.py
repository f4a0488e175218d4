"""The run pipeline end to end: gunicorn(gevent) + Celery worker + PostgreSQL + Redis + the
real groq SDK against the fake Groq server."""

from tests.e2e.chat import Visitor, is_end_of, run_events, text_of
from tests.factories import make_workspace
from tests.fake_groq import Reply


def test_happy_path_event_order_and_text_equality(stack, groq):
    workspace = make_workspace()
    groq.default = Reply.text("Hello! We are open from nine to five on weekdays.", delay=0.002)
    visitor = Visitor(stack, workspace.handle)
    posted = visitor.send("When are you open?")
    run_id = posted["run"]["id"]
    assert posted["run"]["status"] in ("queued", "running")
    stream = visitor.stream(posted["stream_cursor"])
    events = run_events(stream.events_until(is_end_of(run_id)), run_id)
    stream.close()

    names = [e.event for e in events]
    assert names[0] == "message_start" and names[-1] == "message_end"
    assert set(names[1:-1]) == {"delta"}
    end = events[-1].data
    assert end["status"] == "completed" and end["degraded"] is False
    assert text_of(events) == end["full_text"] == "Hello! We are open from nine to five on weekdays."
    reply_id = events[0].data["message_id"]
    saved = visitor.messages()
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert saved[1]["id"] == reply_id and saved[1]["content"] == end["full_text"]
    assert saved[1]["run_id"] == run_id
    run = visitor.run(run_id)
    assert run["status"] == "completed" and run["reply_message_id"] == reply_id
    ids = [e.id for e in events]
    assert len(set(ids)) == len(ids)
