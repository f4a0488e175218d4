"""The exact `count` of a common-word search, kept for the next request that asks it again
(the next page, a refresh) until the workspace's conversations change.

A probed count reads every conversation of the workspace (~80 ms for 10,000); the page
itself stops when it is full. The count is kept in Redis under the search (words and
filters) and a version of the workspace's conversations, read in one statement that is
cheap beside the count: their number and the sum of their rows' transaction ids (xmin).
Every write of a conversation row gives it the writing transaction's id, so the sum moves
(only writes whose ids cancel out exactly would leave it, and then only for COUNT_SECONDS);
an insert or a delete changes the number. Whatever changes a count touches a conversation
row: a message appended sets its last_message_at, a deleted message touches it too
(services.conversations), and so do a new visitor name, status, tag or channel. A write
between the version and the count only makes the kept count newer than its version,
never older. Without Redis the count is simply computed.
"""

import hashlib
import json
import logging
import uuid
from collections.abc import Callable

from redis.exceptions import RedisError
from sqlalchemy import cast, func, literal_column, select
from sqlalchemy.types import BigInteger, Text

from backend.extensions import db, redis_client
from backend.models import Conversation

log = logging.getLogger(__name__)
COUNT_SECONDS = 300
KEY_PREFIX = "search:count:"


def conversations_version(workspace_id: uuid.UUID) -> str:
    """Changes whenever a conversation of the workspace is added, changed or deleted."""
    xmin = cast(cast(literal_column("conversations.xmin"), Text), BigInteger)
    version = select(func.count(), func.coalesce(func.sum(xmin), 0)).where(
        Conversation.workspace_id == workspace_id
    )
    number, xmin_sum = db.session.execute(version).one()
    return f"{number}:{xmin_sum}"


def count_key(workspace_id: uuid.UUID, search: dict) -> str:
    version = conversations_version(workspace_id)
    text = json.dumps([str(workspace_id), version, search], sort_keys=True, default=str)
    return KEY_PREFIX + hashlib.sha256(text.encode()).hexdigest()


def kept_count(workspace_id: uuid.UUID, search: dict, compute: Callable[[], int]) -> int:
    """`compute()`, or what it gave for the same `search` (PostgreSQL only) while the
    workspace's conversations have not changed."""
    key = count_key(workspace_id, search)
    try:
        kept = redis_client().get(key)
    except RedisError as error:
        log.warning("search count: Redis unavailable (%s); counting", error)
        return compute()
    if kept is not None:
        return int(kept)
    count = compute()
    try:
        redis_client().set(key, count, ex=COUNT_SECONDS)
    except RedisError as error:
        log.warning("search count: could not keep it (%s)", error)
    return count
