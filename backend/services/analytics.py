"""Workspace analytics: totals and a per-day series over the last N days.

Days are the workspace's local dates (its IANA time zone), and every day of the
window is present even when nothing happened. On PostgreSQL the counting is
done by two GROUP BY queries over `timezone(tz, ts)::date`; SQLite has no time
zone arithmetic, so there the few needed columns are bucketed in Python.

Conversations (and their human_time_saved_minutes) count on the day they were
created; messages on the day of their timestamp. A degraded reply is an
assistant message whose meta.degraded is true or whose run is marked degraded;
tokens are meta.usage.total_tokens of assistant messages (or prompt + completion).
"""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, text

from backend.extensions import db
from backend.models import AgentRun, Conversation, ConversationMessage, Workspace
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

# jsonb_typeof guards keep a malformed meta (a string where a number belongs)
# from turning the whole report into a cast error.
_PG_NUMBER = "CASE WHEN jsonb_typeof({e}) = 'number' THEN ({e})::text::numeric ELSE 0 END"
_PG_TOKENS = (
    "CASE WHEN jsonb_typeof(m.meta -> 'usage' -> 'total_tokens') = 'number' "
    "THEN (m.meta -> 'usage' ->> 'total_tokens')::numeric ELSE "
    + _PG_NUMBER.format(e="m.meta -> 'usage' -> 'prompt_tokens'")
    + " + "
    + _PG_NUMBER.format(e="m.meta -> 'usage' -> 'completion_tokens'")
    + " END"
)
_PG_MESSAGES = text(
    f"""
    SELECT timezone(:tz, m.timestamp)::date AS day,
           count(*) FILTER (WHERE m.role = 'user') AS visitor_messages,
           count(*) FILTER (WHERE m.role = 'assistant') AS assistant_replies,
           count(*) FILTER (
               WHERE m.role = 'assistant' AND (
                   m.meta @> '{{"degraded": true}}'::jsonb
                   OR EXISTS (SELECT 1 FROM agent_runs r WHERE r.reply_message_id = m.id AND r.degraded)
               )
           ) AS degraded_replies,
           coalesce(sum({_PG_TOKENS}) FILTER (WHERE m.role = 'assistant'), 0) AS tokens_used
    FROM conversation_messages m
    JOIN conversations c ON c.id = m.conversation_id
    WHERE c.workspace_id = :ws AND m.timestamp >= :start AND m.timestamp < :end
      AND m.role IN ('user', 'assistant')
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


def _number(value) -> float:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _tokens(meta: dict) -> int:
    usage = meta.get("usage") if isinstance(meta, dict) else None
    if not isinstance(usage, dict):
        return 0
    total = usage.get("total_tokens")
    if isinstance(total, int | float) and not isinstance(total, bool):
        return int(total)
    return int(_number(usage.get("prompt_tokens")) + _number(usage.get("completion_tokens")))


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
    degraded_run = (
        select(AgentRun.id)
        .where(AgentRun.reply_message_id == ConversationMessage.id, AgentRun.degraded.is_(True))
        .exists()
    )
    messages = db.session.execute(
        select(
            ConversationMessage.timestamp, ConversationMessage.role, ConversationMessage.meta, degraded_run
        )
        .join(Conversation, Conversation.id == ConversationMessage.conversation_id)
        .where(
            Conversation.workspace_id == workspace.id,
            ConversationMessage.timestamp >= start,
            ConversationMessage.timestamp < end,
            ConversationMessage.role.in_(("user", "assistant")),
        )
    )
    for timestamp, role, meta, run_degraded in messages:
        bucket = buckets.get(local_day(timestamp))
        if bucket is None:
            continue
        if role == "user":
            bucket["visitor_messages"] += 1
            continue
        bucket["assistant_replies"] += 1
        meta = meta if isinstance(meta, dict) else {}
        if meta.get("degraded") is True or run_degraded:
            bucket["degraded_replies"] += 1
        bucket["tokens_used"] += _tokens(meta)
