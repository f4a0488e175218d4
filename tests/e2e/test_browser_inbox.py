"""The owner's inbox (/inbox) and a visitor's chat page (/chat/<handle>) in two headless
Chromium contexts against the real stack (gunicorn gevent web, Celery worker, PostgreSQL,
Redis, the groq SDK talking to the fake Groq): the visitor asks for a person, the inbox
shows it live, the owner takes over and answers, the visitor sees the answer, the owner
hands back and the agent answers the next message. Screenshots go to test-artifacts/."""

import pytest

from tests.e2e.test_browser_chat import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.factories import make_service, make_user, make_workspace
from tests.fake_groq import Reply

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
PASSWORD = "inbox-password-123"
REASON = "Wants to talk about a refund"


@pytest.fixture
def two_browsers():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pages = []
        for _ in range(2):
            context = browser.new_context(viewport={"width": 1100, "height": 850})
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.errors = []
            page.on("pageerror", lambda error, page=page: page.errors.append(str(error)))
            pages.append(page)
        yield pages
        browser.close()


def test_visitor_asks_for_a_person_and_the_owner_takes_over_live(stack, groq, two_browsers):
    from playwright.sync_api import expect

    owner_page, visitor_page = two_browsers
    owner = make_user(email="owner-inbox@example.com", password=PASSWORD, full_name="Marta")
    workspace = make_workspace(owner, public_name="Luz Yoga")
    make_service(workspace, name="Hatha class")
    groq.when("person", Reply.tool_call("request_human", {"reason": REASON}), stage="user", once=True)
    groq.when("", Reply.text("I've asked someone from the team to join this chat."), stage="tool", once=True)
    groq.when("prices", Reply.text("A Hatha class is 20 dollars."), stage="user")
    ARTIFACTS.mkdir(exist_ok=True)

    # The owner signs in; the inbox goes live.
    owner_page.goto(f"{stack.url}/inbox")
    owner_page.fill("#login-email", owner.email)
    owner_page.fill("#login-password", PASSWORD)
    owner_page.click("#login-submit")
    expect(owner_page.locator("#workspace-name")).to_contain_text("Luz Yoga")
    expect(owner_page.get_by_test_id("live")).to_have_attribute("data-state", "open")

    # The visitor asks for a person: the inbox shows the new conversation asking for one.
    visitor_page.goto(f"{stack.url}/chat/{workspace.handle}")
    visitor_page.fill("#visitor-name", "Ana")
    visitor_page.fill("#chat-input", "Can I talk to a person about a refund?")
    visitor_page.click("#chat-send")
    expect(visitor_page.locator('#chat-log .msg.assistant[data-state="done"]')).to_contain_text(
        "asked someone from the team"
    )
    item = owner_page.get_by_test_id("conversation").filter(has_text="Ana")
    expect(item).to_have_count(1)
    expect(item.locator('[data-badge="handoff"]')).to_be_visible()
    owner_page.screenshot(path=str(ARTIFACTS / "inbox-handoff-requested.png"), full_page=True)

    # The owner opens it, reads it, takes over: the visitor sees the team is answering.
    item.click()
    expect(owner_page.get_by_test_id("handoff-note")).to_contain_text(REASON)
    messages = owner_page.get_by_test_id("messages")
    expect(messages.locator(".msg.user")).to_contain_text("talk to a person")
    expect(messages.locator(".msg.assistant")).to_contain_text("asked someone from the team")
    owner_page.get_by_test_id("takeover").click()
    expect(owner_page.get_by_test_id("thread")).to_have_attribute("data-agent-mode", "paused")
    expect(visitor_page.get_by_test_id("team-banner")).to_be_visible()
    expect(visitor_page.get_by_test_id("team-banner")).to_have_text("You're chatting with the team")

    # The visitor writes while paused: saved, shown live in the inbox, no assistant answer.
    visitor_page.fill("#chat-input", "Thank you, I bought the 10-class pass last week.")
    visitor_page.click("#chat-send")
    expect(messages.locator(".msg.user")).to_have_count(2)
    expect(messages.locator(".msg.user").last).to_contain_text("10-class pass")
    owner_page.fill("#reply-input", "Hi Ana, Marta here. I have refunded the pass.")
    owner_page.get_by_test_id("reply-send").click()
    expect(visitor_page.locator("#chat-log .msg.owner")).to_contain_text("I have refunded the pass")
    expect(visitor_page.locator("#chat-log .msg.assistant")).to_have_count(1)
    visitor_page.screenshot(path=str(ARTIFACTS / "visitor-with-the-team.png"), full_page=True)
    owner_page.screenshot(path=str(ARTIFACTS / "inbox-taken-over.png"), full_page=True)

    # Handed back: the banner goes, and the agent answers the next message.
    owner_page.get_by_test_id("release").click()
    expect(owner_page.get_by_test_id("thread")).to_have_attribute("data-agent-mode", "auto")
    expect(visitor_page.get_by_test_id("team-banner")).to_be_hidden()
    visitor_page.fill("#chat-input", "Great. What are your prices?")
    visitor_page.click("#chat-send")
    expect(visitor_page.locator('#chat-log .msg.assistant[data-state="done"]').last).to_contain_text(
        "20 dollars"
    )
    expect(messages.locator(".msg.assistant").last).to_contain_text("20 dollars")
    owner_page.screenshot(path=str(ARTIFACTS / "inbox-handed-back.png"), full_page=True)
    # The agent's request saw what the owner wrote.
    last_request = groq.requests[-1]["messages"]
    assert any("I have refunded the pass" in (m.get("content") or "") for m in last_request)
    assert owner_page.errors == [] and visitor_page.errors == []
