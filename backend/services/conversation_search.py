"""The owner list's `q` search: a case-insensitive substring of the visitor's name or
email, or of any of the conversation's messages, with two plans on PostgreSQL.

- Index plan (rare words, and SQLite): the conversations whose messages match come
  from the trigram index in one pass, hashed, then filter the list. Its cost grows
  with the number of matching messages: a word in ~40 % of 200,000 messages makes
  PostgreSQL recheck ~97,000 rows twice (count and page), ~350 ms.
- Probe plan (common words): each conversation is checked on its own, reading its
  messages until the first match, which comes after a message or two for such a
  word; the page walks the conversations in list order and stops when it is full.
  Its cost grows with the workspace's conversations, so it is 10-100x slower than
  the index plan for a rare word.

Which word is which is measured, not guessed: the share of matching messages in a
sample from the workspace's most recently active conversations (one small statement). Both plans select the
same rows in the same order, with the same exact count.
"""

import uuid
from collections.abc import Callable

from sqlalchemy import exists, func, literal, or_, select, true
from sqlalchemy.orm import aliased

from backend.extensions import db
from backend.models import Conversation, ConversationMessage
from backend.services.search_counts import kept_count

# Above this share of matching messages the probe plan's cost (per conversation, an
# index descent, then ~1/share messages read) is below the index plan's (a recheck
# per matching message): an estimate from the timings of bench/owner_api.py, where
# a word in 49 % of the messages costs ~45 ms probed and ~200 ms indexed, and one in
# 0.3 % ~300 ms probed and ~3 ms indexed.
PROBE_SHARE = 0.25
SAMPLE_CONVERSATIONS = 25
SAMPLE_PER_CONVERSATION = 20
# One alias for every search (the visitor subquery), not one built per request.
_VISITOR = aliased(Conversation, name="visitor")


def like_pattern(text: str) -> str:
    """`%text%` with LIKE's metacharacters (and the escape itself) taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def matches_text(q: str, workspace_id: uuid.UUID, conversation_id=None, probe: bool = False):
    """Case-insensitive substring of the visitor's name or email, or of any message of
    the conversation whose id is `conversation_id` (default: Conversation.id).

    The visitor half is a subquery PostgreSQL runs once (hashed) from a trigram index,
    instead of case-folding every conversation's name and email row by row. The
    message half is hashed the same way, unless `probe`: then `OFFSET 0` keeps
    PostgreSQL from turning the EXISTS into a join or a hashed set, so it stays a
    per-conversation lookup that stops at the first matching message.
    """
    conversation_id = Conversation.id if conversation_id is None else conversation_id
    pattern = like_pattern(q)
    visitor = _VISITOR
    by_visitor = select(visitor.id).where(
        visitor.workspace_id == workspace_id,
        or_(
            visitor.visitor_name.ilike(pattern, escape="\\"),
            visitor.visitor_email.ilike(pattern, escape="\\"),
        ),
    )
    in_messages = select(literal(1)).where(
        ConversationMessage.conversation_id == conversation_id,
        ConversationMessage.content.ilike(pattern, escape="\\"),
    )
    if probe:
        in_messages = in_messages.offset(0)
    return or_(conversation_id.in_(by_visitor), exists(in_messages))


def is_common(q: str, workspace_id: uuid.UUID) -> bool:
    """True (PostgreSQL only) when at least PROBE_SHARE of a sample of the workspace's
    messages contain `q`: up to SAMPLE_PER_CONVERSATION messages from each of its
    SAMPLE_CONVERSATIONS most recently active conversations, so that one long
    conversation does not make the whole sample."""
    if db.engine.dialect.name != "postgresql":
        return False
    recent = (
        select(Conversation.id)
        .where(Conversation.workspace_id == workspace_id, Conversation.last_message_at.is_not(None))
        # DESC (nulls first) is a backward scan of the (workspace_id, last_message_at) index.
        .order_by(Conversation.last_message_at.desc())
        .limit(SAMPLE_CONVERSATIONS)
        .subquery()
    )
    some = (
        select(ConversationMessage.content)
        .where(ConversationMessage.conversation_id == recent.c.id)
        .limit(SAMPLE_PER_CONVERSATION)
        .lateral()
    )
    hit = some.c.content.ilike(like_pattern(q), escape="\\")
    total, hits = db.session.execute(
        select(func.count(), func.count().filter(hit)).select_from(recent).join(some, true())
    ).one()
    return total > 0 and hits >= PROBE_SHARE * total


def probe_page(
    q: str,
    workspace_id: uuid.UUID,
    conditions: list,
    list_order: Callable,
    skip: int,
    limit: int,
    search: dict,
) -> tuple[list[Conversation], int]:
    """The probe plan: `page()`'s result for `conditions` plus the `q` match.

    The exact count reads every conversation, so it is kept (services.search_counts) under
    `search` (`q` and the filters that made `conditions`) until the workspace's
    conversations change.

    The page sorts the candidates' keys first (behind `OFFSET 0`, so the match is not
    pushed below the sort) and probes them in list order until skip + limit match;
    the full rows of the page are read last. `list_order(source)` gives the list's
    ORDER BY over `source`'s last_message_at, created_at and id.
    """
    count = kept_count(
        workspace_id,
        search,
        lambda: (
            db.session.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(*conditions, matches_text(q, workspace_id, probe=True))
            )
            or 0
        ),
    )
    keys = (
        select(Conversation.id, Conversation.last_message_at, Conversation.created_at)
        .where(*conditions)
        .order_by(*list_order(Conversation))
        .offset(0)
        .subquery()
    )
    page_keys = (
        select(keys)
        .where(matches_text(q, workspace_id, keys.c.id, probe=True))
        .order_by(*list_order(keys.c))
        .offset(skip)
        .limit(limit)
        .subquery()
    )
    items = db.session.scalars(
        select(Conversation)
        .join(page_keys, page_keys.c.id == Conversation.id)
        .order_by(*list_order(page_keys.c))
    ).all()
    return list(items), count
