"""Choosing which part of a long knowledge base goes into the prompt.

A knowledge base may be far larger than the prompt budget. Cutting it blindly
would hide everything after the cut, so it is split into paragraph-sized
chunks, the chunks are ranked by BM25 against the visitor's recent messages,
and the best ones that fit are returned in their original order.
"""

import re
from functools import lru_cache

from rank_bm25 import BM25L

from backend.rules.folding import fold

CHUNK_MAX_CHARS = 1500
SEPARATOR = "\n\n"

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
_SENTENCE_END = re.compile(r"[.!?\u3002](?=\s)")
_WORD = re.compile(r"\w+")


def select_knowledge(kb: str, query: str, max_chars: int) -> str:
    """The whole KB when it fits, else the chunks most relevant to `query` that fit."""
    if not kb or max_chars <= 0:
        return ""
    if len(kb) <= max_chars:
        return kb
    chunks, index = _index(kb, min(CHUNK_MAX_CHARS, max_chars))
    query_tokens = tokenize(query or "")
    if index is None or not query_tokens:
        return SEPARATOR.join(_leading_that_fit(chunks, max_chars))
    scores = index.get_scores(query_tokens)
    # Best score first; equal scores keep the KB's own order, so the result is deterministic.
    ranked = sorted(range(len(chunks)), key=lambda i: (-float(scores[i]), i))
    chosen: list[int] = []
    used = 0
    for i in ranked:
        cost = len(chunks[i]) + (len(SEPARATOR) if chosen else 0)
        if used + cost <= max_chars:
            chosen.append(i)
            used += cost
    return SEPARATOR.join(chunks[i] for i in sorted(chosen))


def tokenize(text: str) -> list[str]:
    """Lowercased, accent-folded words, lightly stemmed so "parking" meets "park"."""
    return [_stem(w) for w in _WORD.findall(fold(text))]


def _stem(word: str) -> str:
    # Deliberately tiny (English -ing, English/Spanish plural -s): the same rule runs on
    # both sides, so a crude stem only has to be consistent, not linguistically right.
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def split_chunks(kb: str, limit: int = CHUNK_MAX_CHARS) -> list[str]:
    """Paragraphs (blank-line separated), long ones split on line/sentence boundaries."""
    chunks: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(kb):
        paragraph = paragraph.strip()
        if paragraph:
            chunks.extend(_split_long(paragraph, limit))
    return chunks


def _split_long(text: str, limit: int) -> list[str]:
    pieces = []
    while len(text) > limit:
        cut = _cut_point(text, limit)
        head, text = text[:cut].rstrip(), text[cut:].lstrip()
        if head:
            pieces.append(head)
    if text:
        pieces.append(text)
    return pieces


def _cut_point(text: str, limit: int) -> int:
    """The last line or sentence end within `limit`, else the last space; a hard cut only as a last resort.

    A boundary in the first third would leave a tiny chunk, so a later space wins over it.
    """
    window = text[: limit + 1]
    sentence_ends = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() <= limit]
    boundary = max(window.rfind("\n", 1), sentence_ends[-1] if sentence_ends else -1)
    if boundary >= limit // 3:
        return boundary
    space = window.rfind(" ", 1)
    if space > boundary:
        return space
    return boundary if boundary > 0 else limit


def _leading_that_fit(chunks: tuple[str, ...], max_chars: int) -> list[str]:
    out: list[str] = []
    used = 0
    for chunk in chunks:
        cost = len(chunk) + (len(SEPARATOR) if out else 0)
        if used + cost > max_chars:
            break
        out.append(chunk)
        used += cost
    return out


@lru_cache(maxsize=32)
def _index(kb: str, limit: int) -> tuple[tuple[str, ...], BM25L | None]:
    """Chunks and their BM25 index, cached: the same KB is ranked on every run of a workspace.

    BM25L rather than Okapi: Okapi's idf drops to zero or below on small corpora
    (a term in half the chunks), which would make every score equal.
    """
    chunks = tuple(split_chunks(kb, limit))
    tokenized = [tokenize(c) for c in chunks]
    if not chunks or not any(tokenized):
        return chunks, None
    return chunks, BM25L(tokenized)
