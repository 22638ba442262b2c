"""The widget's postMessage checks, both sides, in a real browser: the loader (on the customer's
page) acts only on messages from its own chat frame showing Lumnar's origin; the chat frame acts
only on messages from the page that framed it, on one of the site's allowed origins. Every
message type each side accepts is posted by windows that fail one check or both, and nothing
happens; the same messages from the right window do act (so the "nothing" means something).

Third-party storage is blocked in these browsers (see chromium_with_third_party_storage), so
the chat runs on the loader's host-storage fallback: there the messages carry the visitor
token, and a planted token would put the visitor into a stranger's conversation.
"""

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import snippet_page
from tests.e2e.widget_browser import (  # noqa: F401  (console_fixture: the `console` fixture)
    CHAT_FRAME,
    TOKEN_HEADER,
    chat_frame,
    chromium_with_third_party_storage,
    console_fixture,
    frame_storage,
    host_token,
    make_widget_site,
    open_chat,
    say,
    shown,
)

FAKE_PAGE = "https://evil.example/fake-checkout"
STRANGER_TEXT = "A stranger's conversation"

# What each window posts: every type the loader acts on and every type the chat frame acts on,
# to every window it can reach, then a marker. Messages from one window to another arrive in
# the order sent, so once the marker has arrived every message before it has been handled.
POST_ALL = """([messages, targets]) => {
  const windows = [];
  if (targets.includes("parent")) windows.push(parent);
  if (targets.includes("frames")) {
    for (let i = 0; i < parent.frames.length; i++) {
      if (parent.frames[i] !== window) windows.push(parent.frames[i]);
    }
  }
  if (targets.includes("chat")) windows.push(document.querySelector("iframe[title=Chat]").contentWindow);
  for (const w of windows) {
    for (const m of messages) w.postMessage(m, "*");
    w.postMessage({type: "test:marker"}, "*");
  }
}"""

# Counts the markers a window received, and the lumnar:page messages the chat frame had from
# its parent (the loader sends one each time it accepts a lumnar:ready).
LISTEN = """() => {
  window.__markers = 0;
  window.__pages = 0;
  window.__fromChat = [];
  const chat = document.querySelector("iframe[title=Chat]");
  addEventListener("message", (e) => {
    const d = e.data || {};
    if (d.type === "test:marker") window.__markers++;
    if (d.type === "lumnar:page" && e.source === parent && parent !== window) window.__pages++;
    if (chat && e.source === chat.contentWindow && String(d.type).startsWith("lumnar:")) {
      window.__fromChat.push(d);
    }
  });
}"""

# What the loader shows on the customer's page.
LOADER_STATE = """(key) => {
  const button = document.querySelector("[data-lumnar-launcher]");
  const badge = button.querySelector("span");
  const frame = document.querySelector("iframe[title=Chat]");
  return {
    expanded: button.getAttribute("aria-expanded"),
    badge: badge.style.display === "none" ? "" : badge.textContent,
    frame: frame ? [frame.style.display, frame.offsetWidth, frame.offsetHeight] : null,
    stored: localStorage.getItem("lumnar-visitor:" + key),
  };
}"""


def to_loader(token: str) -> list[dict]:
    return [{"type": "lumnar:ready"}, {"type": "lumnar:keep", "token": token},
            {"type": "lumnar:unread", "count": 7}, {"type": "lumnar:close"}]


def to_chat(token: str, visible: bool) -> list[dict]:
    return [{"type": "lumnar:page", "url": FAKE_PAGE, "token": token},
            {"type": "lumnar:visible", "visible": visible}]


def post_from(sender, messages: list[dict], *targets: str) -> None:
    sender.evaluate(POST_ALL, [messages, list(targets)])


def markers(window, count: int) -> None:
    window.wait_for_function("n => window.__markers >= n", arg=count)


def state(page, key: str) -> dict:
    return page.evaluate(LOADER_STATE, key)


@pytest.fixture(scope="module")
def site(live_server, host_site):
    made = make_widget_site(live_server, [host_site.origin])
    yield made
    made.owner.http.close()


@pytest.fixture
def context(browser_type, browser_type_launch_args, tmp_path, console):
    """Third-party storage blocked; the console guard watches it (hostile windows included:
    nothing they post may make our code complain)."""
    ctx = console.watch(chromium_with_third_party_storage(browser_type, browser_type_launch_args,
                                                          tmp_path / "profile", allowed=False))
    yield ctx
    ctx.close()


@pytest.fixture
def requests(context):
    """Every request the browser makes."""
    seen = []
    context.on("request", lambda request: seen.append(request))
    return seen


def frame_by_title(page, title: str):
    return page.locator(f"iframe[title='{title}']").element_handle().content_frame()


def test_frames_of_other_origins_posting_to_the_loader_and_to_the_chat_change_nothing(
        site, host_site, evil_site, context, requests):
    stranger = site.stranger_visitor(STRANGER_TEXT)
    # The customer's page carries an advert from another origin and a frame of its own origin
    # (allowed for the site, but not the chat's parent); both run hostile script.
    evil_site.add("/advert.html", "<!doctype html><title>Advert</title><p>Buy now</p>")
    host_site.add("/neighbour.html", "<!doctype html><title>Neighbour</title><p>Reviews</p>")
    frames = (f'<iframe title="Advert" src="{evil_site.origin}/advert.html"></iframe>'
              f'<iframe title="Neighbour" src="{host_site.origin}/neighbour.html"></iframe>')
    url = host_site.add(f"/hostile-{site.key}.html", snippet_page(frames + site.snippet))

    page = context.new_page()
    page.goto(url)
    chat = open_chat(page)
    frame = chat_frame(page)
    assert frame_storage(frame) == "SecurityError"  # the host-storage fallback is in use
    first = "Do you sell loose tea?"
    say(chat, first)
    conversation_id = site.conversation_id(first)
    token = host_token(page, site.key)
    assert token and token != stranger
    page.evaluate(LISTEN)
    frame.evaluate(LISTEN)
    senders = [frame_by_title(page, "Advert"), frame_by_title(page, "Neighbour")]
    assert senders[0].url.startswith(evil_site.origin) and senders[1].url.startswith(host_site.origin)

    # Closed: a hostile unread count, token, "close", "ready", "page" and "visible: true".
    page.get_by_role("button", name="Chat with us").click()
    closed = state(page, site.key)
    assert closed == {"expanded": "false", "badge": "", "frame": ["none", 0, 0], "stored": token}
    for n, sender in enumerate(senders, start=1):
        post_from(sender, to_loader(stranger) + to_chat(stranger, True), "parent", "frames")
        markers(page, n)
        markers(frame, n)
    assert state(page, site.key) == closed
    assert frame.evaluate("window.__pages") == 0
    # The chat still counts unread replies while hidden (it was not told it is visible).
    site.reply(conversation_id, "Yes, eleven kinds.")
    expect(page.get_by_role("button", name="Chat with us")).to_have_text("Chat with us1")

    # Open: the same, with "visible: false" now.
    page.get_by_role("button", name="Chat with us").click()
    opened = state(page, site.key)
    assert opened["expanded"] == "true" and opened["badge"] == "" and opened["stored"] == token
    assert opened["frame"][0] == "block" and opened["frame"][1] > 0 and opened["frame"][2] > 0
    page.evaluate("window.__fromChat = []")
    for n, sender in enumerate(senders, start=len(senders) + 1):
        post_from(sender, to_loader(stranger) + to_chat(stranger, False), "parent", "frames")
        markers(page, n)
        markers(frame, n)
    assert state(page, site.key) == opened
    assert frame.evaluate("window.__pages") == 0
    site.reply(conversation_id, "Black, green and white.")
    expect(chat.locator("#messages > li.w-msg-agent")).to_have_count(2)
    # The chat did not count that reply as unread: it still knows it is visible.
    post_from(frame, [], "parent")
    markers(page, 2 * len(senders) + 1)
    assert [m for m in page.evaluate("window.__fromChat") if m["type"] == "lumnar:unread"
            and m["count"]] == []

    # The visitor's next message goes with the visitor's own token and the real page's address.
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/messages")) as sent:
        say(chat, "Thanks, I'll take green.")
    assert sent.value.headers[TOKEN_HEADER.lower()] == token
    body = sent.value.post_data_buffer
    assert url.encode() in body and FAKE_PAGE.encode() not in body
    assert shown(chat) == [first, "Yes, eleven kinds.", "Black, green and white.",
                           "Thanks, I'll take green."]
    assert all(r.headers.get(TOKEN_HEADER.lower()) != stranger for r in requests)
    assert host_token(page, site.key) == token

    # The control: the same messages from the right windows act. From the chat frame to the
    # loader: close, an unread count, a token to keep...
    post_from(frame, [{"type": "lumnar:close"}], "parent")
    expect(page.get_by_role("button", name="Chat with us")).to_have_attribute("aria-expanded", "false")
    post_from(frame, [{"type": "lumnar:unread", "count": 7}], "parent")
    expect(page.get_by_role("button", name="Chat with us")).to_have_text("Chat with us7")
    post_from(frame, [{"type": "lumnar:keep", "token": stranger}], "parent")
    page.wait_for_function("([k, t]) => localStorage.getItem(k) === t",
                           arg=[f"lumnar-visitor:{site.key}", stranger])
    post_from(frame, [{"type": "lumnar:keep", "token": token}], "parent")
    page.wait_for_function("([k, t]) => localStorage.getItem(k) === t",
                           arg=[f"lumnar-visitor:{site.key}", token])
    # ...and from the customer's page to the chat: the page address it reports.
    page.get_by_role("button", name="Chat with us").click()
    post_from(page, [{"type": "lumnar:page", "url": url + "#control"}], "chat")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/messages")) as sent:
        say(chat, "One more thing.")
    assert (url + "#control").encode() in sent.value.post_data_buffer


def test_the_loader_ignores_its_chat_frame_once_it_shows_another_origin(
        site, host_site, evil_site, context):
    evil_site.add("/elsewhere.html", "<!doctype html><title>Elsewhere</title><p>Elsewhere</p>")
    url = host_site.add(f"/navigated-{site.key}.html", snippet_page(site.snippet))
    page = context.new_page()
    page.goto(url)
    open_chat(page)
    say(page.frame_locator(CHAT_FRAME), "Is the shop open on Sundays?")
    token = host_token(page, site.key)
    page.get_by_role("button", name="Chat with us").click()
    page.evaluate(LISTEN)
    # The control: from the frame while it shows Lumnar, an unread count acts.
    post_from(chat_frame(page), [{"type": "lumnar:unread", "count": 3}], "parent")
    expect(page.get_by_role("button", name="Chat with us")).to_have_text("Chat with us3")
    closed = state(page, site.key)

    # The same window, navigated to another origin (a link followed inside the frame, say):
    # it is still the loader's frame, but no longer Lumnar.
    elsewhere = f"{evil_site.origin}/elsewhere.html"
    with page.expect_event("framenavigated", lambda f: f.url == elsewhere):
        chat_frame(page).evaluate("url => { location.href = url; }", elsewhere)
    navigated = chat_frame(page)
    navigated.wait_for_load_state("load")
    assert navigated.url.startswith(evil_site.origin)
    post_from(navigated, to_loader("planted"), "parent")
    markers(page, 2)
    assert state(page, site.key) == closed == {**closed, "badge": "3", "stored": token}

    page.get_by_role("button", name="Chat with us").click()
    opened = state(page, site.key)
    post_from(navigated, [{"type": "lumnar:close"}], "parent")
    markers(page, 3)
    assert state(page, site.key) == opened and opened["expanded"] == "true"


def test_the_loader_ignores_another_frame_of_lumnars_origin(site, host_site, context):
    # A second Lumnar frame on the page (the chat frame itself, placed by hand): the right
    # origin, but not the window the loader opened.
    other = f'<iframe title="Another chat" src="{site.lumnar}/widget/{site.key}"></iframe>'
    url = host_site.add(f"/two-frames-{site.key}.html", snippet_page(other + site.snippet))
    page = context.new_page()
    page.goto(url)
    open_chat(page)
    say(page.frame_locator(CHAT_FRAME), "Do you gift-wrap?")
    token = host_token(page, site.key)
    page.get_by_role("button", name="Chat with us").click()
    page.evaluate(LISTEN)
    post_from(chat_frame(page), [{"type": "lumnar:unread", "count": 3}], "parent")  # control
    expect(page.get_by_role("button", name="Chat with us")).to_have_text("Chat with us3")
    closed = state(page, site.key)

    another = frame_by_title(page, "Another chat")
    assert another.url.startswith(site.lumnar)
    post_from(another, to_loader("planted"), "parent")
    markers(page, 2)
    assert state(page, site.key) == closed == {**closed, "badge": "3", "stored": token}

    page.get_by_role("button", name="Chat with us").click()
    opened = state(page, site.key)
    post_from(another, [{"type": "lumnar:close"}], "parent")
    markers(page, 3)
    assert state(page, site.key) == opened and opened["expanded"] == "true"


def test_the_chat_ignores_a_parent_page_of_an_origin_not_allowed(
        site, host_site, evil_site, context, requests):
    """Browsers refuse to show the chat in such a page (frame-ancestors). Here that header is
    taken off the frame's response on its way to the browser, as in a browser that does not
    enforce it: the frame's own origin check is then all that stands, and it holds."""
    stranger = site.stranger_visitor(STRANGER_TEXT)

    def without_frame_ancestors(route):
        response = route.fetch()
        headers = dict(response.headers)
        headers["content-security-policy"] = "; ".join(
            d for d in headers["content-security-policy"].split("; ")
            if not d.startswith("frame-ancestors"))
        route.fulfill(response=response, headers=headers)

    context.route(f"{site.lumnar}/widget/{site.key}", without_frame_ancestors)
    frame_html = f'<iframe title="Chat" src="{site.lumnar}/widget/{site.key}"></iframe>'

    def framed_by(origin_site, name: str):
        page = context.new_page()
        page.goto(origin_site.add(f"/{name}-{site.key}.html", snippet_page(frame_html)))
        frame = chat_frame(page)
        frame.wait_for_load_state("load")  # its script listens from now on
        frame.evaluate(LISTEN)
        return page, frame

    # The control: the allowed page hands the chat a token (what the loader does on a
    # reload), and the chat takes it: it shows that visitor's conversation.
    page, frame = framed_by(host_site, "allowed-parent")
    post_from(page, to_chat(stranger, True), "chat")
    expect(page.frame_locator(CHAT_FRAME).locator("#messages")).to_contain_text(STRANGER_TEXT)

    # The same messages from a page of another origin: ignored. The chat starts on its own
    # (after waiting for a loader that never answers) with a new visitor of its own.
    page, frame = framed_by(evil_site, "evil-parent")
    post_from(page, to_chat(stranger, True) + to_loader(stranger), "chat")
    markers(frame, 1)
    chat = page.frame_locator(CHAT_FRAME)
    first = "Hello?"
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/messages")
                             and r.frame == frame) as sent:
        say(chat, first)
    assert shown(chat) == [first]
    assert sent.value.headers[TOKEN_HEADER.lower()] != stranger
    assert FAKE_PAGE.encode() not in sent.value.post_data_buffer
    evil_requests = [r for r in requests if r.frame == frame]
    assert evil_requests and all(r.headers.get(TOKEN_HEADER.lower()) != stranger
                                 for r in evil_requests)
