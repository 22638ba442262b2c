"""Live chat in real browsers: a visitor on a customer's website (another origin than Lumnar's),
an agent in the dashboard, the real server, worker and streams between them (see conftest.py).

The visitor and the agent are separate browser contexts, as two people on two computers. The
agent opens the dashboard before the visitor writes, so the team is "here" and the widget asks
for no e-mail address.
"""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.chat_fixtures import png_bytes
from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import (
    ACTION_TIMEOUT_MS,
    log_in,
    sign_up,
    snippet_page,
    unique_email,
    watch_csp,
)
from tests.mailcatcher import link_in

CHAT_FRAME = "iframe[title=Chat]"
RECONNECT_MS = 15_000  # Chromium retries a dropped EventSource after about 3 s


@dataclass
class Shop:
    owner: str
    site_key: str
    snippet: str
    agent_state: dict  # the owner's logged-in cookies, for each test's agent context
    url: str  # the customer's page with the snippet, on an allowed origin
    evil_url: str  # the same snippet on an origin that is not allowed


@pytest.fixture(scope="module")
def shop(browser, live_server, host_site, evil_site):
    """One owner and one site for the module, made through the UI: sign up, confirm by
    e-mail, log in, add the site with the host page's origin, copy the snippet."""
    ctx = browser.new_context(base_url=live_server.url)
    ctx.set_default_timeout(ACTION_TIMEOUT_MS)
    try:
        page = ctx.new_page()
        owner = unique_email("shopowner")
        sign_up(page, "Olive Owner", owner)
        page.goto(link_in(live_server.wait_for_mail(owner, "Confirm your e-mail")))
        log_in(page, owner)

        page.goto("/dashboard/sites")
        page.get_by_label("Site name").fill("Ceramics shop")
        page.get_by_label("Allowed origins (one a line, like https://shop.example.com)").fill(
            host_site.origin)
        page.get_by_label("Greeting").fill("Hello! Ask us about our mugs.")
        page.get_by_label("Away message").fill("We are away. Leave your e-mail and we will answer.")
        page.get_by_label("Accent colour").fill("#0f766e")
        page.get_by_label("Keep chats for (days)").fill("30")
        page.get_by_role("button", name="Save site").click()
        expect(page).to_have_url(re.compile(r"/dashboard/sites/\d+$"))
        snippet = page.locator("#snippet").input_value()
        found = re.fullmatch(
            rf'<script src="{re.escape(live_server.url)}/widget\.js" data-site="([\w-]+)" async>'
            r"</script>", snippet)
        assert found, snippet
        state = ctx.storage_state()
    finally:
        ctx.close()
    return Shop(owner=owner, site_key=found.group(1), snippet=snippet, agent_state=state,
                url=host_site.add("/shop.html", snippet_page(snippet, "Ceramics shop")),
                evil_url=evil_site.add("/shop.html", snippet_page(snippet, "Not the shop")))


@pytest.fixture
def agent(new_context, shop):
    """The owner's inbox, open and connected to its live stream (so the team is not away)."""
    page = new_context(storage_state=shop.agent_state).new_page()
    page.goto("/dashboard/inbox")
    expect(page.get_by_text("Live updates: connected")).to_be_visible()
    return page


@pytest.fixture
def visitor(new_context):
    """A visitor's browser tab, nowhere yet."""
    return new_context().new_page()


# --- helpers ----------------------------------------------------------------------------------


def open_chat(page, url: str):
    """Load the customer's page, click the launcher, wait for the chat: its FrameLocator."""
    page.goto(url)
    page.get_by_role("button", name="Chat with us").click()
    chat = page.frame_locator(CHAT_FRAME)
    expect(chat.get_by_label("Message", exact=True)).to_be_visible()
    return chat


def chat_frame(page):
    """The chat iframe as a Frame (for evaluate and axe)."""
    return page.locator(CHAT_FRAME).element_handle().content_frame()


def say(chat, text: str) -> None:
    chat.get_by_label("Message", exact=True).fill(text)
    chat.get_by_role("button", name="Send").click()
    expect(chat.locator("#messages > li.w-msg-visitor").filter(has_text=text)).to_have_count(1)


def open_conversation(agent, text: str) -> int:
    """Click the inbox row showing `text`; the conversation's id."""
    agent.locator("#inbox-rows > li").filter(has_text=text).get_by_role("link").click()
    expect(agent).to_have_url(re.compile(r"/dashboard/conversations/\d+$"))
    expect(agent.get_by_text("Live updates: connected")).to_be_visible()
    return int(urlsplit(agent.url).path.rsplit("/", 1)[1])


def reply(agent, conversation_id: int, text: str = "", file=None) -> None:
    """Send a reply and wait until the agent's own stream has shown it."""
    messages = agent.locator(f"#messages-{conversation_id} > li")
    before = messages.count()
    agent.get_by_label("Reply", exact=True).fill(text)
    if file is not None:
        agent.get_by_label("Attach a file").set_input_files(file)
    agent.get_by_role("button", name="Send reply").click()
    expect(messages).to_have_count(before + 1)




def loaded(locator) -> None:
    """Wait until an <img> has really loaded (a blocked or broken image has no width)."""
    locator.evaluate("img => img.decode()")
    assert locator.evaluate("img => img.naturalWidth") > 0


# --- tests ------------------------------------------------------------------------------------


def test_visitor_and_agent_talk_live_across_origins(agent, visitor, shop):
    agent_csp, visitor_csp = watch_csp(agent), watch_csp(visitor)
    agent.evaluate("window.__sameDocument = true")  # a reload would drop this
    unread_before = int(agent.locator("#unread-count").get_attribute("data-unread"))

    chat = open_chat(visitor, shop.url)
    # The team has the dashboard open: the e-mail address is optional.
    expect(chat.get_by_label("Your e-mail (optional)")).to_be_visible()
    question = f"Do you ship mugs to Ghent? ({unique_email('q')})"
    say(chat, question)

    # The inbox shows the new conversation at once, without a reload.
    row = agent.locator("#inbox-rows > li").filter(has_text=question)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("1 unread")
    expect(agent.get_by_text(re.compile(r"^No conversations yet"))).to_be_hidden()
    unread = unread_before + 1
    expect(agent.locator("#unread-count")).to_have_attribute("data-unread", str(unread))
    expect(agent.locator("#unread-count")).to_have_text(f"{unread} unread")
    expect(agent).to_have_title(re.compile(rf"^\({unread}\) Inbox\b"))
    assert agent.evaluate("window.__sameDocument === true"), "the inbox reloaded"
    assert_accessible(agent)

    conversation_id = open_conversation(agent, question)
    expect(agent.locator(f"#messages-{conversation_id}")).to_contain_text(question)
    answer = "Yes, to all of Belgium, in three days."
    reply(agent, conversation_id, answer)

    visitor_answer = chat.locator("#messages > li.w-msg-agent")
    expect(visitor_answer).to_have_count(1)
    expect(visitor_answer).to_contain_text(answer)
    expect(visitor_answer).to_contain_text("Olive")  # the agent's first name
    # The agent opened the conversation: the visitor's message is marked seen.
    expect(chat.locator("#seen")).to_have_text("Seen")
    assert_accessible(chat_frame(visitor))
    assert_accessible(agent)

    # A reload of the customer's page keeps the conversation (the visitor token survives:
    # in the frame's storage, or, where the browser blocks a third-party frame's storage, in
    # the customer page's, kept by the loader).
    visitor.reload()
    visitor.get_by_role("button", name="Chat with us").click()
    history = visitor.frame_locator(CHAT_FRAME).locator("#messages > li")
    expect(history).to_have_count(2)
    expect(history.nth(0)).to_contain_text(question)
    expect(history.nth(1)).to_contain_text(answer)

    assert agent_csp == [], agent_csp
    assert visitor_csp == [], visitor_csp


def test_typing_shows_on_the_other_side(agent, visitor, shop):
    chat = open_chat(visitor, shop.url)
    first = f"About the blue teapot ({unique_email('t')})"
    say(chat, first)
    conversation_id = open_conversation(agent, first)

    # Typed as a person types: the widget tells the team at most every 3 s, and it told
    # them already (uselessly: no conversation yet) while the first message was written.
    chat.get_by_label("Message", exact=True).press_sequentially("Is it still in stock", delay=200)
    expect(agent.locator(f"#typing-{conversation_id}")).to_have_text(re.compile(r"is typing…$"))

    agent.get_by_label("Reply", exact=True).fill("Let me check")
    expect(chat.locator("#typing")).to_have_text("The team is typing…")

    # A message ends "typing" on the other side.
    chat.get_by_role("button", name="Send").click()
    expect(agent.locator(f"#typing-{conversation_id}")).to_have_text("")
    agent.get_by_role("button", name="Send reply").click()
    expect(chat.locator("#typing")).to_have_text("")


def test_replies_missed_while_the_visitor_is_offline_arrive_once(
        agent, visitor, shop, host_site, flaky_link, live_server):
    # The visitor reaches Lumnar through a link this test can cut (see FlakyLink): the same
    # snippet, with the link's address in place of the server's.
    snippet = shop.snippet.replace(live_server.url, flaky_link.url)
    url = host_site.add(f"/flaky-{shop.site_key}.html", snippet_page(snippet, "Ceramics shop"))
    chat = open_chat(visitor, url)
    first = f"Is the green vase in stock? ({unique_email('o')})"
    say(chat, first)
    conversation_id = open_conversation(agent, first)
    reply(agent, conversation_id, "Let me look.")
    messages = chat.locator("#messages > li")
    expect(messages).to_have_count(2)  # the stream is open and delivering

    frame = chat_frame(visitor)
    frame.evaluate("() => { window.__sseErrors = 0;"
                   " document.addEventListener('htmx:sseError', () => window.__sseErrors++); }")
    visitor.context.set_offline(True)  # new requests fail, the reconnect attempts too…
    flaky_link.cut()  # …and the open stream really ends
    frame.wait_for_function("() => window.__sseErrors > 0")

    missed = ["Yes, two of them.", "Shall I keep one for you?"]
    for text in missed:
        reply(agent, conversation_id, text)
    assert messages.count() == 2  # nothing can reach the visitor now

    flaky_link.restore()
    visitor.context.set_offline(False)
    expect(messages).to_have_count(4, timeout=RECONNECT_MS)
    # A later reply arrives after anything the reconnect replayed: no duplicate can follow.
    reply(agent, conversation_id, "See you soon.")
    expect(messages).to_have_count(5)
    texts = [t.strip() for t in chat.locator("#messages > li .w-body").all_inner_texts()]
    assert texts == [first, "Let me look.", *missed, "See you soon."], texts


def test_files_go_both_ways_and_an_svg_is_refused(agent, visitor, shop, tmp_path):
    photo = tmp_path / "crack.png"
    photo.write_bytes(png_bytes())
    notes = tmp_path / "care notes.txt"
    notes.write_text("Hand wash only. Not for the microwave.\n")
    svg = tmp_path / "drawing.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    agent_csp, visitor_csp = watch_csp(agent), watch_csp(visitor)

    chat = open_chat(visitor, shop.url)
    first = f"My mug arrived cracked ({unique_email('f')})"
    say(chat, first)
    conversation_id = open_conversation(agent, first)
    chat.get_by_label("Attach a file").set_input_files(photo)
    chat.get_by_role("button", name="Send").click()
    own = chat.get_by_role("img", name="Image crack.png")
    expect(own).to_be_visible()
    loaded(own)

    thumb = agent.locator(f"#messages-{conversation_id}").get_by_role("img", name="Image crack.png")
    expect(thumb).to_be_visible()
    loaded(thumb)

    reply(agent, conversation_id, "Sorry! Here is how to care for the new one.", file=notes)
    link = chat.get_by_role("link", name="care notes.txt")
    expect(link).to_be_visible()
    download = visitor.context.request.get(chat_frame(visitor).url.split("/widget/")[0]
                                           + link.get_attribute("href"))
    assert download.ok
    assert download.body() == notes.read_bytes()
    assert download.headers["content-disposition"].startswith("attachment")

    messages = agent.locator(f"#messages-{conversation_id} > li")
    count = messages.count()
    chat.get_by_label("Attach a file").set_input_files(svg)
    chat.get_by_role("button", name="Send").click()
    expect(chat.get_by_role("alert")).to_have_text(
        "Only images (PNG, JPEG, GIF, WebP), PDF and plain text files can be sent. "
        "This file is of another kind.")
    # Refused before anything was stored: a later message is the next one the agent sees.
    say(chat, "Never mind the drawing.")
    expect(messages).to_have_count(count + 1)
    expect(messages.last).to_contain_text("Never mind the drawing.")
    assert agent_csp == [] and visitor_csp == [], (agent_csp, visitor_csp)


def test_a_visitor_deleting_the_conversation_clears_it_from_the_agents_screens(
        agent, visitor, shop):
    chat = open_chat(visitor, shop.url)
    first = f"Please forget me ({unique_email('d')})"
    say(chat, first)
    row = agent.locator("#inbox-rows > li").filter(has_text=first)
    expect(row).to_have_count(1)
    # The inbox stays open in one tab, the conversation in another.
    view = agent.context.new_page()
    view.goto(row.get_by_role("link").get_attribute("href"))
    expect(view.get_by_text("Live updates: connected")).to_be_visible()
    expect(view.get_by_role("list", name="Messages")).to_contain_text(first)

    chat.get_by_text("Your details and this conversation").click()
    visitor.once("dialog", lambda dialog: dialog.accept())
    chat.get_by_role("button", name="Delete this conversation").click()
    expect(chat.get_by_role("status").filter(has_text="Your conversation was deleted")).to_be_visible()
    expect(chat.locator("#messages > li")).to_have_count(0)

    expect(view.get_by_role("heading", name="Conversation deleted")).to_be_visible()
    expect(view.get_by_text("The visitor deleted this conversation.")).to_be_visible()
    expect(view.get_by_role("list", name="Messages")).to_have_count(0)
    expect(row).to_have_count(0)


def test_a_page_on_an_origin_not_allowed_cannot_show_the_chat(visitor, shop, evil_site,
                                                             live_server):
    """The loader asks first and shows nothing there, not even the button
    (tests/e2e/test_widget_origins_browser.py has the console message and the site's page);
    a chat frame put on such a page by hand is still refused by the browser (frame-ancestors)."""
    requests = []
    visitor.on("request", lambda r: requests.append(urlsplit(r.url).path))
    with visitor.expect_console_message(lambda m: "is not an allowed origin" in m.text):
        visitor.goto(shop.evil_url)
    expect(visitor.get_by_role("button", name="Chat with us")).to_have_count(0)
    assert visitor.locator(CHAT_FRAME).count() == 0
    assert f"/widget/{shop.site_key}/status" in requests, requests
    assert f"/widget/{shop.site_key}" not in requests, requests
    assert f"/widget/{shop.site_key}/visitors" not in requests, requests

    by_hand = evil_site.add("/framed.html", snippet_page(
        f'<iframe title="Chat" src="{live_server.url}/widget/{shop.site_key}"></iframe>'))
    with visitor.expect_console_message(lambda m: "frame-ancestors" in m.text) as refused:
        visitor.goto(by_hand)
    assert "violates the following Content Security Policy directive" in refused.value.text
    frame = chat_frame(visitor)
    frame.wait_for_load_state()
    assert not frame.url.startswith("http"), frame.url  # Chromium's error page, not the chat
    assert frame.locator("textarea").count() == 0
    # The frame was asked for, but its script never ran: no visitor was made, no chat loaded.
    assert f"/widget/{shop.site_key}/visitors" not in requests, requests
    assert f"/widget/{shop.site_key}/chat" not in requests, requests


def test_the_demo_shop_shows_the_launcher(visitor):
    # The demo site exists because the harness ran `flask demo` on the empty database.
    chat = open_chat(visitor, "/demo/shop")
    expect(visitor.get_by_role("heading", name="Demo shop")).to_be_visible()
    expect(chat.get_by_text("Hi! Ask us anything about our products.")).to_be_visible()
    assert_accessible(chat_frame(visitor))
