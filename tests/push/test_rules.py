"""The push rules without an app: token format, message content, Expo's answers, backoff."""

import random
import uuid

import pytest

from backend.rules import push

GOOD = ["ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]", "ExpoPushToken[AbC-12_3]", "ExponentPushToken[a:b.c+d=]"]
BAD = [
    "",
    "ExponentPushToken[]",
    "ExponentPushToken[a b]",
    "ExponentPushToken[a/b]",
    "ExponentPushToken[a]x",
    "exponentpushtoken[abc]",
    "FCMToken[abc]",
    "ExponentPushToken[\x00]",
    "ExponentPushToken[\ud800]",
    "ExponentPushToken[" + "a" * 240 + "]",
    "ExponentPushToken[abc]\n",
    123,
    None,
]


@pytest.mark.parametrize("token", GOOD)
def test_expo_tokens_are_accepted(token):
    assert push.is_push_token(token)


@pytest.mark.parametrize("token", BAD)
def test_anything_else_is_not_a_token(token):
    assert not push.is_push_token(token)


def test_the_handoff_notice_names_the_visitor_and_carries_the_reason():
    conversation_id, workspace_id = uuid.uuid4(), uuid.uuid4()
    notice = push.handoff_notice(conversation_id, workspace_id, "  Ana  ", "Wants to\nchange the booking")
    assert notice.title == "Ana asked for a person"
    assert notice.body == "Wants to change the booking"
    assert notice.data == {
        "type": "handoff.requested",
        "conversation_id": str(conversation_id),
        "workspace_id": str(workspace_id),
    }
    anonymous = push.handoff_notice(conversation_id, workspace_id, None, None)
    assert anonymous.title == "A visitor asked for a person" and anonymous.body


def test_long_names_and_reasons_are_clipped():
    notice = push.handoff_notice(uuid.uuid4(), uuid.uuid4(), "N" * 300, "r" * 2000)
    assert len(notice.title) <= push.TITLE_MAX and notice.title.endswith("…")
    assert len(notice.body) <= push.BODY_MAX


def test_the_new_conversation_notice():
    notice = push.new_conversation_notice(uuid.uuid4(), uuid.uuid4(), "")
    assert notice.title == "New conversation" and notice.type == "conversation.created"
    assert notice.body == "A visitor started a conversation."


def test_messages_are_expo_messages_in_chunks_of_100():
    tokens = [f"ExpoPushToken[{i}]" for i in range(250)]
    assert [len(c) for c in push.chunks(tokens)] == [100, 100, 50]
    [message] = push.messages(tokens[:1], "T", "B", {"k": "v"})
    assert message == {
        "to": tokens[0], "title": "T", "body": "B", "data": {"k": "v"}, "sound": "default", "priority": "high"
    }  # fmt: skip


TOKENS = ["ExpoPushToken[a]", "ExpoPushToken[b]", "ExpoPushToken[c]"]


def test_tickets_are_read_in_order():
    body = {
        "data": [
            {"status": "ok", "id": "1"},
            {"status": "error", "message": "gone", "details": {"error": "DeviceNotRegistered"}},
            {"status": "error", "message": "slow down", "details": {"error": "MessageRateExceeded"}},
        ]
    }
    verdict = push.judge(200, body, TOKENS)
    assert verdict.sent == (TOKENS[0],) and verdict.unregistered == (TOKENS[1],)
    assert verdict.retry == (TOKENS[2],) and verdict.dropped == ()
    assert verdict.error == "DeviceNotRegistered, MessageRateExceeded"
    too_big = {"data": [{"status": "error", "details": {"error": "MessageTooBig"}}]}
    assert push.judge(200, too_big, TOKENS[:1]).dropped == (TOKENS[0],)


@pytest.mark.parametrize("status", [None, 500, 502, 503, 429])
def test_no_answer_a_5xx_or_a_429_retries_every_token(status):
    body = {"errors": [{"code": "INTERNAL_SERVER_ERROR", "message": "boom"}]}
    verdict = push.judge(status, body, TOKENS, error="timed out after 5 s" if status is None else None)
    assert verdict.retry == tuple(TOKENS) and not verdict.sent
    assert verdict.error == ("timed out after 5 s" if status is None else "INTERNAL_SERVER_ERROR: boom")


def test_another_4xx_drops_the_tokens_and_a_garbled_200_retries():
    assert push.judge(
        400, {"errors": [{"code": "VALIDATION_ERROR", "message": "x"}]}, TOKENS
    ).dropped == tuple(TOKENS)
    assert push.judge(200, {"data": [{"status": "ok"}]}, TOKENS).retry == tuple(TOKENS)
    assert push.judge(200, None, TOKENS).retry == tuple(TOKENS)
    assert push.judge(200, [1, 2, 3], TOKENS).retry == tuple(TOKENS)


def test_backoff_doubles_is_capped_jittered_and_ends():
    rng = random.Random(7)
    delays = [push.retry_delay(n, 2.0, 10.0, 6, rng) for n in range(1, 7)]
    bases = [2, 4, 8, 10, 10]
    for delay, base in zip(delays, bases, strict=False):
        assert delay is not None and base * 0.8 <= delay <= base * 1.2
    assert delays[5] is None
    assert push.retry_delay(0, 2.0, 10.0, 6) is None
