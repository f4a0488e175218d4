"""The run loop: claim a run, stream the model's reply into the conversation's
Redis Stream, execute tool calls, and save the reply exactly once.

Failure rules: an LLM error before any text reached the visitor is retried with
backoff, then answered in degraded mode (a reply built from the workspace's own
data); an error after text was streamed emits `error`, then `message_end` with
what was streamed, which is saved. A cancel request stops the stream within
RUN_CANCEL_POLL_SECONDS, even while the model is silent, and saves the partial reply.
"""

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import groq
from flask import current_app
from sqlalchemy import case, func, select

from backend import metrics
from backend.agent import llm
from backend.agent.context import AgentContext
from backend.agent.context_cache import agent_context
from backend.agent.degraded import build_degraded_reply, chunk_text_for_stream
from backend.agent.prompt import HistoryItem, build_chat_messages
from backend.agent.run_watch import run_watcher
from backend.agent.tools import REQUEST_HUMAN, TOOL_SPECS, execute_tool
from backend.extensions import db
from backend.logs import run_log
from backend.models import AgentRun, ConversationMessage
from backend.services import dispatch, handoff, runs
from backend.streams import RunPublisher, cancel_key

log = logging.getLogger(__name__)


class Cancelled(Exception):
    pass


def load_history(claim: runs.ClaimedRun, limit: int) -> list[HistoryItem]:
    """Messages up to and including the run's own visitor message, oldest first.

    An earlier run's reply is saved after any visitor message posted while it
    streamed, so its timestamp is later than this run's visitor message: it is
    placed by the time of the message it answers (its run's created_at), right
    after that message, or the model would never see its own previous answer.
    """
    asked_at = (
        select(ConversationMessage.timestamp)
        .where(ConversationMessage.id == claim.user_message_id)
        .scalar_subquery()
    )
    placed_at = func.coalesce(AgentRun.created_at, ConversationMessage.timestamp)
    is_reply = case((AgentRun.id.is_(None), 0), else_=1)
    rows = db.session.execute(
        select(ConversationMessage.role, ConversationMessage.content)
        .outerjoin(AgentRun, AgentRun.id == ConversationMessage.run_id)
        .where(
            ConversationMessage.conversation_id == claim.conversation_id,
            placed_at <= asked_at,
        )
        .order_by(placed_at.desc(), is_reply.desc(), ConversationMessage.timestamp.desc())
        .limit(limit)
    ).all()
    return [HistoryItem(role, content) for role, content in reversed(rows)]


def _assistant_tool_message(text: str, calls: list[dict]) -> dict:
    """The assistant turn that asked for `calls`, as the model must see it next round."""
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in calls
        ],
    }


class Generation:
    """One run's conversation with the model, streamed through a RunPublisher.

    `on_handoff(reason)` is called when the model's request_human call succeeded."""

    def __init__(
        self,
        ctx: AgentContext,
        messages: list[dict],
        publisher: RunPublisher,
        on_handoff: Callable[[str], None] = lambda reason: None,
    ):
        config = current_app.config
        self.ctx, self.messages, self.publisher = ctx, messages, publisher
        self.on_handoff = on_handoff
        self.model = config["TEXT_MODEL_NAME"]
        self.temperature = config["MODEL_TEMPERATURE"]
        self.max_rounds = config["AGENT_MAX_TOOL_ROUNDS"]
        self.attempts = 1 + config["GROQ_MAX_RETRIES"]
        self.backoff = config["GROQ_RETRY_BACKOFF_SECONDS"]
        self.text: list[str] = []
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        self.tool_calls: list[str] = []
        self.started = time.monotonic()
        self.ttft: float | None = None
        self._stream: groq.Stream | None = None

    def run(self) -> runs.Outcome:
        use_tools = True
        for round_no in range(self.max_rounds + 1):
            offer_tools = use_tools and round_no < self.max_rounds
            try:
                try:
                    calls = self._round_with_retries(offer_tools)
                except llm.LLMUnavailable as exc:
                    if not (llm.is_tool_use_failed(exc.__cause__) and offer_tools):
                        raise
                    # Groq could not parse the model's tool call: once more, without tools
                    # (a cancel during that retry must be caught below, like any other).
                    use_tools = offer_tools = False
                    calls = self._round_with_retries(False)
            except llm.LLMUnavailable as exc:
                return self._failed(exc)
            except Cancelled:
                return self._outcome("cancelled")
            if not calls or not offer_tools:
                # A tool call in a round that offered no tools (the cap was reached, or
                # tools were withdrawn) cannot be honoured: that round's text is the answer.
                break
            self._run_tools(calls)
        if not self.text:
            # Nothing reached the visitor (an empty answer, or only tool calls): the run
            # still answers, from the workspace's own data, so it saves a reply.
            return self._failed(
                llm.LLMUnavailable("empty_reply", "The model returned no text", retryable=False)
            )
        return self._outcome("completed")

    def _round_with_retries(self, offer_tools: bool) -> list[dict]:
        for attempt in range(self.attempts):
            try:
                return self._round(offer_tools)
            except (Cancelled, llm.LLMUnavailable):
                raise
            except Exception as exc:
                error = llm.classify_error(exc)
                error.__cause__ = exc
                # Retrying after text reached the visitor would repeat it.
                if self.text or not error.retryable or llm.is_tool_use_failed(exc):
                    raise error from exc
                if attempt == self.attempts - 1:
                    raise error from exc
                time.sleep(self.backoff * (2**attempt))
        raise AssertionError("unreachable")

    def _round(self, offer_tools: bool) -> list[dict]:
        if self.publisher.cancel_requested:
            raise Cancelled()
        extra = {"tools": TOOL_SPECS, "tool_choice": "auto"} if offer_tools else {}
        stream = self._stream = llm.stream_chat(
            llm.get_client(),
            model=self.model,
            messages=self.messages,
            temperature=self.temperature,
            **extra,
        )
        calls = llm.ToolCallAccumulator()
        round_text: list[str] = []
        try:
            for chunk in stream:
                self._take_chunk(chunk, calls, round_text)
        except Exception:
            if self.publisher.cancel_requested:  # the watch closed the stream under us
                raise Cancelled() from None
            raise
        finally:
            self._stream = None
            stream.close()
        ordered = calls.ordered()
        if ordered:
            self.messages.append(_assistant_tool_message("".join(round_text), ordered))
        return ordered

    def _take_chunk(self, chunk: dict, calls: llm.ToolCallAccumulator, round_text: list[str]) -> None:
        """Streams a chunk's text to the visitor, collects its tool calls and usage."""
        choices = chunk.get("choices")
        if choices:
            delta = choices[0].get("delta") or {}
            content = delta.get("content")
            if content:
                self._stream_text(content, round_text)
            if delta.get("tool_calls"):
                calls.add(delta["tool_calls"])
        usage = (chunk.get("x_groq") or {}).get("usage") or chunk.get("usage")
        if usage:
            self._add_usage(usage)

    def _stream_text(self, content: str, round_text: list[str]) -> None:
        if self.ttft is None:
            self.ttft = time.monotonic() - self.started
        self.text.append(content)
        round_text.append(content)
        self.publisher.delta(content)
        if self.publisher.cancel_requested:
            raise Cancelled()

    def interrupt(self) -> None:
        """Called from the run's watch thread on cancel: stop reading the model now."""
        self.publisher.cancel_requested = True
        stream = self._stream
        if stream is not None:
            stream.response.close()

    def _run_tools(self, calls: list[dict]) -> None:
        for index, call in enumerate(calls):
            call_id = call["id"] or f"call_{index}"
            call["id"] = call_id
            try:
                shown_args = json.loads(call["arguments"] or "{}")
            except ValueError:
                shown_args = call["arguments"]
            self.publisher.tool_call(call_id, call["name"], shown_args)
            result = execute_tool(self.ctx, call["name"], call["arguments"])
            self.tool_calls.append(call["name"])
            self.publisher.tool_result(call_id, call["name"], result.status, result.data, result.error)
            if call["name"] == REQUEST_HUMAN and result.status == "ok" and isinstance(result.data, dict):
                self.on_handoff(result.data["reason"])
            self.messages.append(
                {"role": "tool", "tool_call_id": call_id, "content": result.as_tool_message_content()}
            )

    def _add_usage(self, usage: dict) -> None:
        for key in self.usage:
            self.usage[key] += usage.get(key) or 0

    def _failed(self, error: llm.LLMUnavailable) -> runs.Outcome:
        error_info = {"code": error.code, "message": error.message}
        if self.text:  # the visitor already saw part of a reply: keep it, say it broke
            self.publisher.error(error.code, error.message)
            return self._outcome("failed", error=error_info)
        degraded_text = build_degraded_reply(self.ctx)
        for piece in chunk_text_for_stream(degraded_text):
            self.publisher.delta(piece)
            self.text.append(piece)
        if self.ttft is None:
            self.ttft = time.monotonic() - self.started
        return self._outcome("completed", error=error_info, degraded=True)

    def _outcome(self, status: str, error: dict | None = None, degraded: bool = False) -> runs.Outcome:
        meta = {
            "model": self.model,
            "usage": dict(self.usage),
            "ttft_ms": round(self.ttft * 1000, 1) if self.ttft is not None else None,
            "latency_ms": round((time.monotonic() - self.started) * 1000, 1),
            "tool_calls": list(self.tool_calls),
            "degraded": degraded,
        }
        return runs.Outcome(status, "".join(self.text), meta, error, degraded, self.publisher.first_event_id)


def execute_run(run_id: uuid.UUID) -> None:
    """Runs one agent run end to end; a no-op when it is not (or not yet) this run's turn."""
    claim = runs.claim_run(run_id)
    if claim is None:
        return
    step_log = run_log(claim.run_id, claim.conversation_id, claim.workspace_id)
    step_log.info("run.started", extra={"attempt": claim.attempt})
    ctx, messages = _prepare(claim)
    publisher = RunPublisher(
        claim.conversation_id,
        claim.run_id,
        claim.reply_message_id,
        cancel_flag_key=cancel_key(claim.run_id),
        batched=True,
    )
    publisher.message_start()  # its id is saved with the outcome (chat.cursor_for_run)
    generation = Generation(
        ctx, messages, publisher, lambda reason: _record_handoff(claim, publisher, reason)
    )
    try:
        outcome = _generate_watched(claim, generation)
        finished = dispatch.finish(claim.run_id, claim.conversation_id, outcome, publisher)
    finally:
        publisher.close()
    _report(step_log, generation, outcome, finished)


def _prepare(claim: runs.ClaimedRun) -> tuple[AgentContext, list[dict]]:
    """The workspace's facts and the chat messages; no connection is held afterwards."""
    ctx = agent_context(claim.workspace_id)
    history = load_history(claim, current_app.config["AGENT_HISTORY_MESSAGES"])
    messages = build_chat_messages(ctx, history, datetime.now(UTC))
    db.session.close()  # no connection held while the model streams
    return ctx, messages


def _record_handoff(claim: runs.ClaimedRun, publisher: RunPublisher, reason: str) -> None:
    """The agent asked for a person: recorded on the conversation (which notifies the
    owner), event `handoff` to the visitor, and `agent_mode` when the workspace pauses."""
    try:
        request = handoff.request_human(claim.conversation_id, claim.run_id, reason)
    except Exception:
        # The reply goes on; the owner is not notified (the database was unreachable).
        log.exception("handoff request of run %s not recorded", claim.run_id)
        db.session.rollback()
        return
    finally:
        db.session.close()  # no connection held while the model streams on
    publisher.handoff_requested(reason)
    if request.paused:
        publisher.agent_mode("paused", handoff.BY_AGENT)


def _generate_watched(claim: runs.ClaimedRun, generation: Generation) -> runs.Outcome:
    """The generation, with the run's heartbeat kept and its cancel flag watched."""
    with run_watcher().watching(claim.run_id, generation.interrupt):
        return generation.run()


def _report(step_log, generation: Generation, outcome: runs.Outcome, finished: bool) -> None:
    duration = time.monotonic() - generation.started
    metrics.record_run_finished(outcome.status, duration, generation.ttft, outcome.degraded)
    metrics.record_events_published(generation.publisher.count)
    step_log.info(
        "run.finished",
        extra={
            "status": outcome.status,
            "duration_ms": round(duration * 1000, 1),
            "degraded": outcome.degraded,
            "ttft_ms": outcome.meta["ttft_ms"],
            "saved": finished,
        },
    )
