"""The visitor demo page in real headless Chromium against the real stack: gunicorn
(gevent) web + Celery worker + PostgreSQL + Redis + the groq SDK talking to the
fake Groq server. The model is scripted to call get_booking_link first, then to
stream its answer slowly enough to be photographed mid-stream."""

import shutil
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from backend.seed import CALENDLY_LINK, seed_demo
from tests.fake_groq import Reply

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium)",
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ANSWER = (
    "Happy to help! Our initial evaluation takes 60 minutes and costs $140. "
    "You can pick a time that suits you with the button below, or here: "
    f"{CALENDLY_LINK} and we will see you at 412 Harbor Street."
)
STREAMING = '#chat-log .msg.assistant[data-state="streaming"]'
DONE = '#chat-log .msg.assistant[data-state="done"]'


def scrape(base_url: str) -> dict:
    """{(sample name, sorted label pairs): value} from the web process's /metrics."""
    text = requests.get(f"{base_url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def browser_page():
    from playwright.sync_api import expect, sync_playwright

    # A run goes through Celery and the fake LLM: allow more than expect()'s 5 s default.
    expect.set_options(timeout=20_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 900, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        yield page
        context.close()
        browser.close()


def test_visitor_chats_sees_the_stream_and_books(stack, groq, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    seed_demo("demo-password-123")
    groq.when("book", Reply.tool_call("get_booking_link", {}), stage="user")
    groq.when("", Reply.text(ANSWER, first_delay=0.3, delay=0.08), stage="tool")

    page.goto(f"{stack.url}/chat/demo")
    expect(page.locator("#profile-name")).to_have_text("Harbor Street Physiotherapy")
    expect(page.locator("#services li")).to_have_count(3)
    expect(page.locator("#services")).to_contain_text("Initial evaluation")
    expect(page.locator("#services")).to_contain_text("$140.00")

    page.fill("#visitor-name", "Ana")
    page.fill("#chat-input", "Hi! How do I book a first appointment?")
    page.press("#chat-input", "Enter")
    expect(page.locator("#chat-log .msg.user")).to_have_text(
        "YouHi! How do I book a first appointment?", use_inner_text=False
    )

    # Mid-stream: the reply bubble is still streaming and holds part of the text.
    streaming_text = page.locator(f"{STREAMING} .text")
    expect(streaming_text).to_contain_text("Happy to help!")
    partial = streaming_text.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-mid-stream.png"), full_page=True)
    assert 0 < len(partial) < len(ANSWER)
    assert page.locator(STREAMING).count() == 1

    # The tool result put a booking button on the reply.
    book = page.locator('#chat-log .msg.assistant [data-testid="booking-link"]')
    expect(book).to_have_attribute("href", CALENDLY_LINK)
    expect(book).to_have_attribute("target", "_blank")
    expect(book).to_have_text("Book now")

    # The end: exactly the streamed text, the link in it clickable, no degraded badge.
    expect(page.locator(DONE)).to_have_count(1)
    expect(page.locator(f"{DONE} .text")).to_have_text(ANSWER)
    expect(page.locator(f'{DONE} .text a[href="{CALENDLY_LINK}"]')).to_have_count(1)
    expect(page.locator(f"{DONE} .badge")).to_have_count(0)
    expect(page.locator("#typing")).to_be_hidden()

    # A reload shows the saved history once and the stream works again.
    page.reload()
    expect(page.locator("#chat-log .msg")).to_have_count(2)
    expect(page.locator(f"{DONE} .text")).to_have_text(ANSWER)
    page.fill("#chat-input", "Thanks, that is all")
    page.click("#chat-send")
    expect(page.locator(DONE)).to_have_count(2)
    expect(page.locator(DONE).nth(1).locator(".text")).to_have_text("You said: Thanks, that is all")
    expect(page.locator("#chat-log .msg")).to_have_count(4)
    assert page.errors == []

    # What the worker recorded shows up in one scrape of the web process.
    samples = scrape(stack.url)
    assert samples[("assistant_runs_total", (("status", "completed"),))] == 2
    assert samples[("assistant_runs_current", (("status", "completed"),))] == 2
    assert samples[("assistant_run_duration_seconds_count", ())] == 2
    assert samples[("assistant_run_ttft_seconds_count", ())] == 2
    assert samples[("assistant_stream_events_published_total", ())] > 2 * 3
    assert samples[("assistant_queue_depth", (("queue", "agent-runs"),))] == 0
    # The page holds one stream; the one from before the reload closes at its next heartbeat.
    deadline = time.monotonic() + 10
    while scrape(stack.url)[("assistant_sse_streams_active", ())] != 1:
        assert time.monotonic() < deadline, "the SSE gauge did not settle at one open stream"
        time.sleep(0.2)


def test_degraded_reply_is_badged(stack, groq, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    seed_demo("demo-password-123")
    groq.default = Reply.error(503)

    page.goto(f"{stack.url}/chat/demo")
    page.fill("#chat-input", "Are you open on Saturday?")
    page.press("#chat-input", "Enter")
    expect(page.locator(DONE)).to_have_count(1, timeout=30_000)
    expect(page.locator(f"{DONE} .badge.degraded")).to_have_text("limited reply")
    expect(page.locator(f"{DONE} .text")).to_contain_text(CALENDLY_LINK)
    assert page.errors == []


def test_an_owner_reply_appears_live_on_the_visitors_page(stack, groq, browser_page):
    from playwright.sync_api import expect

    from backend.extensions import db
    from backend.models import Conversation
    from backend.seed import DEMO_EMAIL

    page = browser_page
    seed_demo("demo-password-123")
    page.goto(f"{stack.url}/chat/demo")
    page.fill("#chat-input", "Can someone from the team call me back?")
    page.press("#chat-input", "Enter")
    expect(page.locator(DONE)).to_have_count(1)

    login = requests.post(
        f"{stack.url}/api/v1/login/access-token",
        data={"username": DEMO_EMAIL, "password": "demo-password-123"},
        timeout=10,
    )
    token = login.json()["access_token"]
    [conversation] = db.session.execute(db.select(Conversation)).scalars().all()
    response = requests.post(
        f"{stack.url}/api/v1/messages/conversations/{conversation.id}",
        json={"content": "Hi Ana, this is Maria from the clinic: I will call you at 3pm."},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    owner_bubble = page.locator("#chat-log .msg.owner")
    expect(owner_bubble).to_have_count(1)
    expect(owner_bubble.locator(".text")).to_have_text(
        "Hi Ana, this is Maria from the clinic: I will call you at 3pm."
    )
    page.reload()  # the history shows it once, not twice
    expect(page.locator("#chat-log .msg.owner")).to_have_count(1)
    assert page.errors == []
