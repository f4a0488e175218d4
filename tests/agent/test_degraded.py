"""The degraded reply: the workspace's tone, its own link and contact details, nothing invented."""

import pytest

from backend.agent.context import BookingFacts
from backend.agent.degraded import TEMPLATES, build_degraded_reply, chunk_text_for_stream
from backend.agent.prompt import TONE_INSTRUCTIONS
from backend.rules.tones import DEFAULT_TONE, TONES
from tests.agent.factories import make_context

LINK = "https://calendly.com/luz/class"
PHONE = "+56 9 1234 5678"
WEBSITE = "https://luzyoga.example"


def test_there_is_one_template_per_tone():
    assert sorted(TEMPLATES) == sorted(TONES)


def test_every_tone_has_prompt_instructions_and_the_default_is_one_of_them():
    assert sorted(TONE_INSTRUCTIONS) == sorted(TONES)
    assert DEFAULT_TONE in TONES


@pytest.mark.parametrize("tone", TONES)
def test_link_and_contacts_when_present(tone):
    ctx = make_context(
        tone=tone,
        booking=BookingFacts("calendly", LINK),
        phone=PHONE,
        website=WEBSITE,
        business_name="Luz SpA",
    )
    reply = build_degraded_reply(ctx)
    assert reply.startswith(TEMPLATES[tone].apology)
    assert f"here: {LINK}\n" in reply
    assert PHONE in reply and WEBSITE in reply and "Luz SpA" in reply
    assert f"{WEBSITE}." not in reply and f"{LINK}." not in reply  # no period glued to a URL
    assert len(reply) < 400


@pytest.mark.parametrize("tone", TONES)
def test_nothing_about_a_link_without_a_connector(tone):
    reply = build_degraded_reply(make_context(tone=tone, phone=PHONE))
    assert "book" not in reply.lower()
    assert "http" not in reply and "link" not in reply.lower()
    assert PHONE in reply


@pytest.mark.parametrize("tone", TONES)
def test_website_only(tone):
    reply = build_degraded_reply(make_context(tone=tone, website=WEBSITE))
    assert WEBSITE in reply
    assert "phone" not in reply.lower()


@pytest.mark.parametrize("tone", TONES)
def test_without_link_or_contacts_only_an_apology(tone):
    reply = build_degraded_reply(make_context(tone=tone))
    assert reply == f"{TEMPLATES[tone].apology}\n{TEMPLATES[tone].fallback}"
    assert "http" not in reply and "book" not in reply.lower()


def test_professional_wording_matches_the_documented_sentence():
    reply = build_degraded_reply(make_context(booking=BookingFacts("square", "https://squareup.com/b/x")))
    assert "You can book directly here: https://squareup.com/b/x" in reply


def test_contact_falls_back_to_the_workspace_name():
    reply = build_degraded_reply(make_context(phone=PHONE))
    assert f"Luz Yoga Studio by phone at {PHONE}" in reply


def test_each_tone_reads_differently():
    ctx_kwargs = {"booking": BookingFacts("calendly", LINK), "phone": PHONE}
    replies = {build_degraded_reply(make_context(tone=tone, **ctx_kwargs)) for tone in TONES}
    assert len(replies) == len(TONES)


def test_unknown_tone_uses_professional():
    assert build_degraded_reply(make_context(tone="grumpy")) == build_degraded_reply(make_context())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Hello",
        "Hello world, how are you?",
        "  leading and trailing  ",
        "lines\nand\n\ttabs\r\n",
        "émoji 🙈 and ñandú   spaced",
        f"Book here: {LINK} now.",
    ],
)
def test_stream_chunks_concatenate_to_the_text(text):
    chunks = chunk_text_for_stream(text)
    assert "".join(chunks) == text
    assert all(chunks)
    assert all(len(chunk.split()) <= 1 for chunk in chunks)  # at most one word per chunk


def test_stream_chunks_are_word_sized():
    assert chunk_text_for_stream("You can book here: https://x.example ok") == [
        "You ",
        "can ",
        "book ",
        "here: ",
        "https://x.example ",
        "ok",
    ]
