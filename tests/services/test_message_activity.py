"""The message_activity trigger keeps exactly the counters the messages imply,
through inserts, updates, deletes and cascading deletes (PostgreSQL)."""

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update

from backend.extensions import db
from backend.models import Conversation, ConversationMessage, MessageActivity
from backend.models.activity import BUCKET_SECONDS
from backend.services.analytics import message_tokens
from tests.factories import make_conversation, make_message, make_workspace


def bucket_of(ts: datetime) -> datetime:
    return datetime.fromtimestamp(math.floor(ts.timestamp() / BUCKET_SECONDS) * BUCKET_SECONDS, UTC)


def expected() -> dict:
    totals: dict = {}
    for m in db.session.scalars(select(ConversationMessage)):
        if m.role not in ("user", "assistant"):
            continue
        conversation = db.session.get(Conversation, m.conversation_id)
        key = (m.conversation_id, bucket_of(m.timestamp), conversation.workspace_id)
        row = totals.setdefault(key, Counter())
        row["visitor_messages"] += m.role == "user"
        row["assistant_replies"] += m.role == "assistant"
        row["degraded_replies"] += m.role == "assistant" and (m.meta or {}).get("degraded") is True
        row["tokens_used"] += message_tokens(m.meta) if m.role == "assistant" else 0
    return {key: dict(+row) for key, row in totals.items() if +row}


def actual() -> dict:
    db.session.expire_all()
    rows = {}
    for a in db.session.scalars(select(MessageActivity)):
        counts = {
            "visitor_messages": a.visitor_messages,
            "assistant_replies": a.assistant_replies,
            "degraded_replies": a.degraded_replies,
            "tokens_used": a.tokens_used,
        }
        counts = {k: v for k, v in counts.items() if v}
        if counts:
            rows[(a.conversation_id, a.bucket, a.workspace_id)] = counts
    return rows


WEIRD_METAS = [
    {"usage": {"total_tokens": 12}},
    {"usage": {"prompt_tokens": 7, "completion_tokens": 3}},
    {"usage": {"prompt_tokens": 7, "completion_tokens": "3"}},
    {"usage": {"total_tokens": 7.9}},
    {"usage": {"total_tokens": -5, "prompt_tokens": 1}},
    {"usage": {"total_tokens": 1e15}},
    {"usage": {"total_tokens": True}},
    {"usage": "lots"},
    {"degraded": True},
    {"degraded": "true"},
    {},
]


def test_trigger_follows_every_change():
    workspace = make_workspace()
    first, second = make_conversation(workspace), make_conversation(make_workspace())
    base = datetime(2026, 3, 1, 10, 7, tzinfo=UTC)
    messages = []
    for i, meta in enumerate(WEIRD_METAS):
        ts = base + timedelta(minutes=4 * i)  # crosses several 15-minute buckets
        messages.append(make_message(first, "user", "q", timestamp=ts))
        messages.append(
            make_message(first, "assistant", "a", timestamp=ts + timedelta(seconds=30), meta=meta)
        )
    make_message(
        second, "assistant", "x", timestamp=base, meta={"usage": {"total_tokens": 5}, "degraded": True}
    )
    make_message(first, "owner", "not counted", timestamp=base)
    assert actual() == expected()
    assert sum(row.get("tokens_used", 0) for row in actual().values()) == 12 + 10 + 7 + 7 + 0 + 5

    # meta, role and timestamp updates move the counts
    db.session.execute(
        update(ConversationMessage)
        .where(ConversationMessage.id == messages[1].id)
        .values(meta={"degraded": True, "usage": {"total_tokens": 100}})
    )
    db.session.execute(
        update(ConversationMessage).where(ConversationMessage.id == messages[2].id).values(role="owner")
    )
    db.session.execute(
        update(ConversationMessage)
        .where(ConversationMessage.id == messages[3].id)
        .values(timestamp=base + timedelta(days=2))
    )
    db.session.commit()
    assert actual() == expected()

    # deletes subtract; deleting a conversation removes its rows (cascade), others stay
    db.session.execute(delete(ConversationMessage).where(ConversationMessage.id == messages[5].id))
    db.session.commit()
    assert actual() == expected()
    db.session.execute(delete(Conversation).where(Conversation.id == first.id))
    db.session.commit()
    assert actual() == expected()
    assert {key[0] for key in actual()} == {second.id}
