"""The exact `count` of a common-word search, kept for the next request that asks it again
(the next page, a refresh) until the workspace's conversations change.

A probed count reads every conversation of the workspace (~80 ms for 10,000); the page
itself stops when it is full. The count is kept in Redis under the search (words and
filters) and a version of the workspace's conversations, read in one statement that is
cheap beside the count (models.row_versions: their number and the sum of their xmins,
which any insert, update or delete moves; kept at most COUNT_SECONDS in any case).
Whatever changes a count touches a conversation
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
from sqlalchemy import bindparam, select

from backend.extensions import db, redis_client
from backend.models import Conversation
from backend.models.row_versions import rows_version

log = logging.getLogger(__name__)
COUNT_SECONDS = 300
KEY_PREFIX = "search:count:"


# Built once, like agent.context_cache's: building it per request cost more than running it.
CONVERSATIONS_VERSION = select(
    rows_version(Conversation, Conversation.workspace_id == bindparam("workspace_id"))
)


def conversations_version(workspace_id: uuid.UUID) -> str:
    """Changes whenever a conversation of the workspace is added, changed or deleted."""
    return str(db.session.scalar(CONVERSATIONS_VERSION, {"workspace_id": workspace_id}))


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
