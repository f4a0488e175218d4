"""Conversations and messages around local midnight in one time zone, for the analytics tests."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from backend.extensions import db
from backend.models import AgentRun
from backend.models.types import utcnow
from tests.factories import make_conversation, make_message, make_workspace

ZONE = "America/Los_Angeles"


def local(day_offset: int, hour: int, minute: int = 0) -> datetime:
    """A moment on the workspace's local calendar, `day_offset` days from its today."""
    zone = ZoneInfo(ZONE)
    today = utcnow().astimezone(zone).date()
    return datetime.combine(today + timedelta(days=day_offset), time(hour, minute), zone)


def seed(workspace):
    yesterday = make_conversation(workspace, created_at=local(-1, 23, 30), human_time_saved_minutes=4)
    today = make_conversation(workspace, created_at=local(0, 0, 30), human_time_saved_minutes=6)
    make_conversation(workspace, created_at=local(-7, 23, 59), human_time_saved_minutes=100)  # outside 7 days
    make_conversation(make_workspace(), created_at=local(0, 1))  # another workspace
    make_message(yesterday, "user", "hi", timestamp=local(-1, 23, 40))
    make_message(
        yesterday,
        "assistant",
        "hello",
        timestamp=local(-1, 23, 50),
        meta={"degraded": True, "usage": {"total_tokens": 100, "prompt_tokens": 1}},
    )
    make_message(
        yesterday,
        "assistant",
        "more",
        timestamp=local(0, 0, 40),
        meta={"usage": {"prompt_tokens": 10, "completion_tokens": 5}},
    )
    question = make_message(today, "user", "q", timestamp=local(0, 0, 45))
    reply = make_message(
        today,
        "assistant",
        "a",
        timestamp=local(0, 0, 50),
        meta={"degraded": True, "usage": {"total_tokens": "x"}},  # malformed usage counts 0
    )
    db.session.add(
        AgentRun(
            conversation_id=today.id, user_message_id=question.id, reply_message_id=reply.id, degraded=True
        )
    )
    make_message(today, "owner", "owner note", timestamp=local(0, 0, 55))
    make_message(today, "user", "too old", timestamp=local(-7, 12))
    db.session.commit()
