"""The reply sent when the LLM is unavailable, built only from the workspace's own data.

It apologises in the workspace's tone, gives the booking link when a connector
is active and the owner's phone / website when set, and states nothing else:
without the model there is nothing it could know about the visitor's question.
"""

import re
from dataclasses import dataclass

from backend.agent.context import AgentContext
from backend.rules.tones import DEFAULT_TONE


@dataclass(frozen=True)
class _Template:
    apology: str
    booking: str  # {link}
    contact: str  # {name}, {contacts}; no final period: it would stick to a URL
    phone: str  # {phone}
    website: str  # {website}
    fallback: str  # when there is neither a link nor contact details


TEMPLATES = {
    "professional": _Template(
        apology="Thank you for your message. I'm sorry, I can't answer fully right now.",
        booking="You can book directly here: {link}",
        contact="You can also contact {name} {contacts}",
        phone="by phone at {phone}",
        website="through {website}",
        fallback="Please try again in a few minutes.",
    ),
    "friendly": _Template(
        apology="Thanks so much for reaching out! I'm sorry, I can't give you a full answer right now.",
        booking="You can book directly here: {link}",
        contact="You're also welcome to contact {name} {contacts}",
        phone="by phone at {phone}",
        website="through {website}",
        fallback="Please try again in a little while, I'll be happy to help!",
    ),
    "casual": _Template(
        apology="Hey, sorry! I can't really answer right now.",
        booking="You can book directly here: {link}",
        contact="Or just reach {name} {contacts}",
        phone="at {phone}",
        website="on {website}",
        fallback="Try again in a bit!",
    ),
    "formal": _Template(
        apology="Thank you for your message. We regret that a complete answer cannot be provided "
        "at this moment.",
        booking="You may book an appointment directly here: {link}",
        contact="You may also contact {name} {contacts}",
        phone="by telephone at {phone}",
        website="through {website}",
        fallback="We kindly ask you to try again shortly.",
    ),
    "playful": _Template(
        apology="Oops, my brain is taking a quick coffee break, so I can't answer fully right now!",
        booking="Good news though: you can book directly here: {link}",
        contact="Or say hi to {name} {contacts}",
        phone="at {phone}",
        website="on {website}",
        fallback="Give me a moment and try again!",
    ),
}

_WORD_CHUNK = re.compile(r"\s+|\S+\s*")


def build_degraded_reply(ctx: AgentContext) -> str:
    """A short apology with the booking link and contact details that the workspace has."""
    template = TEMPLATES.get(ctx.workspace.tone, TEMPLATES[DEFAULT_TONE])
    sentences = [template.apology]
    if ctx.booking is not None:
        sentences.append(template.booking.format(link=ctx.booking.link))
    contacts = []
    if ctx.owner.phone and ctx.owner.phone.strip():
        contacts.append(template.phone.format(phone=ctx.owner.phone.strip()))
    if ctx.owner.website and ctx.owner.website.strip():
        contacts.append(template.website.format(website=ctx.owner.website.strip()))
    if contacts:
        sentences.append(template.contact.format(name=_name(ctx), contacts=" or ".join(contacts)))
    if len(sentences) == 1:
        sentences.append(template.fallback)
    # One sentence per line: a URL ends its line instead of running into the next sentence.
    return "\n".join(sentences)


def _name(ctx: AgentContext) -> str:
    return ctx.owner.business_name or ctx.workspace.display_name


def chunk_text_for_stream(text: str) -> list[str]:
    """Word-sized pieces (each word with its trailing whitespace); joined, they are exactly `text`."""
    return _WORD_CHUNK.findall(text)
