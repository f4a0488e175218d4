"""Workspace analytics: totals and a per-day series over the last N days.

Days are the workspace's local dates (its IANA time zone), and every day of the
window is present even when nothing happened. On PostgreSQL two GROUP BY
queries over `timezone(tz, ts)::date` do the counting: one over conversations,
one over the trigger-maintained message_activity counters (a few rows per
conversation instead of every message). SQLite has neither time zone arithmetic
nor the trigger, so there the few needed columns are bucketed in Python.

Conversations (and their human_time_saved_minutes) count on the day they were
created; messages on the day of their timestamp. A degraded reply is an
assistant message whose meta.degraded is true (the run loop writes the run's
degraded flag there); tokens are meta.usage.total_tokens of assistant messages,
else prompt_tokens + completion_tokens.
"""

import math
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, text

from backend.extensions import db
from backend.models import Conversation, ConversationMessage, Workspace
from backend.models.types import utcnow

METRICS = (
    "conversations",
    "visitor_messages",
    "assistant_replies",
    "degraded_replies",
    "human_time_saved_minutes",
    "tokens_used",
)

_PG_CONVERSATIONS = text(
    """
    SELECT timezone(:tz, c.created_at)::date AS day,
           count(*) AS conversations,
           coalesce(sum(c.human_time_saved_minutes), 0) AS human_time_saved_minutes
    FROM conversations c
    WHERE c.workspace_id = :ws AND c.created_at >= :start AND c.created_at < :end
    GROUP BY 1
    """
)

# Message counters come from message_activity, kept by a trigger (models/activity.py):
# its 15-minute buckets never straddle a local midnight, so grouping them by local
# date gives the same days as grouping the messages themselves.
_PG_MESSAGES = text(
    """
    SELECT timezone(:tz, a.bucket)::date AS day,
           sum(a.visitor_messages) AS visitor_messages,
           sum(a.assistant_replies) AS assistant_replies,
           sum(a.degraded_replies) AS degraded_replies,
           sum(a.tokens_used) AS tokens_used
    FROM message_activity a
    WHERE a.workspace_id = :ws AND a.bucket >= :start AND a.bucket < :end
    GROUP BY 1
    """
)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _window(zone: ZoneInfo, days: int) -> tuple[date, date, datetime, datetime]:
    today = utcnow().astimezone(zone).date()
    start_day = today - timedelta(days=days - 1)
    start = datetime.combine(start_day, time.min, zone).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=1), time.min, zone).astimezone(UTC)
    return start_day, today, start, end


def sql_aggregates_available() -> bool:
    """PostgreSQL can group by local date itself; other databases take the Python path."""
    return db.engine.dialect.name == "postgresql"


def workspace_analytics(workspace: Workspace, days: int) -> dict:
    zone = _zone(workspace.timezone)
    start_day, end_day, start, end = _window(zone, days)
    buckets = {start_day + timedelta(days=i): dict.fromkeys(METRICS, 0) for i in range(days)}
    params = {"ws": workspace.id, "tz": zone.key, "start": start, "end": end}
    if sql_aggregates_available():
        rows = [*db.session.execute(_PG_CONVERSATIONS, params), *db.session.execute(_PG_MESSAGES, params)]
        for row in rows:
            values = row._asdict()
            bucket = buckets.get(values.pop("day"))
            if bucket is not None:
                for key, value in values.items():
                    bucket[key] += int(value or 0)
    else:
        _fill_in_python(buckets, workspace, zone, start, end)
    totals = {key: sum(bucket[key] for bucket in buckets.values()) for key in METRICS}
    return {
        "workspace_id": workspace.id,
        "timezone": zone.key,
        "days": days,
        "start_date": start_day,
        "end_date": end_day,
        "totals": totals,
        "series": [{"date": day, **bucket} for day, bucket in sorted(buckets.items())],
    }


def _token_count(value) -> int:
    """A usable token count: a number in [0, 1e12), floored; anything else counts 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(math.floor(value)) if 0 <= value < 1e12 else 0


def message_tokens(meta) -> int:
    """usage.total_tokens, else prompt_tokens + completion_tokens (the trigger's rule)."""
    usage = meta.get("usage") if isinstance(meta, dict) else None
    if not isinstance(usage, dict):
        return 0
    total = usage.get("total_tokens")
    if isinstance(total, int | float) and not isinstance(total, bool):
        return _token_count(total)
    return _token_count(usage.get("prompt_tokens")) + _token_count(usage.get("completion_tokens"))


def _fill_in_python(buckets: dict, workspace: Workspace, zone: ZoneInfo, start, end) -> None:
    """The SQLite path: same numbers, bucketed here because SQLite cannot shift time zones."""

    def local_day(ts: datetime) -> date:
        return ts.astimezone(zone).date()

    conversations = db.session.execute(
        select(Conversation.created_at, Conversation.human_time_saved_minutes).where(
            Conversation.workspace_id == workspace.id,
            Conversation.created_at >= start,
            Conversation.created_at < end,
        )
    )
    for created_at, saved in conversations:
        bucket = buckets.get(local_day(created_at))
        if bucket is not None:
            bucket["conversations"] += 1
            bucket["human_time_saved_minutes"] += saved or 0
    messages = db.session.execute(
        select(ConversationMessage.timestamp, ConversationMessage.role, ConversationMessage.meta)
        .join(Conversation, Conversation.id == ConversationMessage.conversation_id)
        .where(
            Conversation.workspace_id == workspace.id,
            ConversationMessage.timestamp >= start,
            ConversationMessage.timestamp < end,
            ConversationMessage.role.in_(("user", "assistant")),
        )
    )
    for timestamp, role, meta in messages:
        bucket = buckets.get(local_day(timestamp))
        if bucket is None:
            continue
        if role == "user":
            bucket["visitor_messages"] += 1
            continue
        bucket["assistant_replies"] += 1
        meta = meta if isinstance(meta, dict) else {}
        if meta.get("degraded") is True:
            bucket["degraded_replies"] += 1
        bucket["tokens_used"] += message_tokens(meta)
