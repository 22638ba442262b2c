"""The visitor's token is never in a cookie or a URL, whichever storage keeps it: the chat frame's
own (third-party storage allowed) or, where the browser blocks a cross-site frame's storage, the
customer page's, kept there by the loader. Every request the visitor's browser makes is
recorded (the page, the chat frame, htmx requests, the visitors fetch, the event stream, the
file upload, images) while the visitor chats, sends a file, reloads and chats on."""

from urllib.parse import unquote

import pytest
from playwright.sync_api import expect

from tests.chat_fixtures import png_bytes
from tests.e2e.conftest import snippet_page, unique_email
from tests.e2e.widget_browser import (  # noqa: F401  (console_fixture: the `console` fixture)
    CHAT_FRAME,
    STORAGE_KEY,
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


@pytest.fixture(scope="module")
def site(live_server, host_site):
    made = make_widget_site(live_server, [host_site.origin])
    yield made
    made.owner.http.close()




def chat_and_reload(context, site, url: str, tmp_path) -> tuple[list, object]:
    """A visitor chats, sends a photo, reloads the page and chats on, while every request of
    the browser (all pages, all frames) is recorded: (the requests, the page)."""
    requests = []
    context.on("request", lambda request: requests.append(request))
    photo = tmp_path / "teapot.png"
    photo.write_bytes(png_bytes())

    page = context.new_page()
    page.goto(url)
    chat = open_chat(page)
    first = f"Is the teapot dishwasher safe? ({unique_email('q')})"
    say(chat, first)
    conversation_id = site.conversation_id(first)
    # Typing before the second message (a conversation exists now: the frame tells the team).
    chat.get_by_label("Message", exact=True).press_sequentially("And the lid", delay=50)
    say(chat, "And the lid?")
    say(chat, "Here is mine.", file=photo)
    image = chat.get_by_role("img", name="Image teapot.png")
    expect(image).to_be_visible()
    image.evaluate("img => img.decode()")
    site.reply(conversation_id, "Yes, both are.")
    expect(chat.locator("#messages > li.w-msg-agent")).to_have_count(1)

    page.reload()
    chat = open_chat(page)
    expect(chat.locator("#messages > li")).to_have_count(4)  # the same conversation
    say(chat, "Thank you!")
    assert shown(chat) == [first, "And the lid?", "Here is mine.", "Yes, both are.", "Thank you!"]
    return requests, page


def assert_token_in_no_cookie_and_no_url(requests, context, page, token: str) -> None:
    signature = token.rsplit(".", 1)[1]  # the part that makes it a credential
    paths = {r.url.split("?", 1)[0].split("/", 3)[-1] for r in requests}
    # The recording saw everything the widget does: its script, frame, visitor, chat,
    # messages (a multipart upload among them), typing, stream and the photo.
    for seen in ("widget.js", "/visitors", "/chat", "/messages", "/typing", "sse/visitor",
                 "widget/files/"):
        assert any(seen in p for p in paths), (seen, sorted(paths))
    carried = [r for r in requests if r.headers.get(TOKEN_HEADER.lower()) == token]
    assert len(carried) >= 5, "the token's requests were not recorded"
    for request in requests:
        for where in (request.url, unquote(request.url)):
            assert token not in where and signature not in where, request.url
        # all_headers(): what went over the wire, Cookie included (headers leaves it out).
        cookie = request.all_headers().get("cookie", "")
        assert token not in cookie and signature not in cookie, (request.url, cookie)
    assert all(token not in c["value"] and signature not in c["value"]
               for c in context.cookies()), context.cookies()
    assert token not in chat_frame(page).evaluate("document.cookie")
    assert token not in page.evaluate("document.cookie")


def test_the_visitor_token_is_in_no_cookie_and_no_url_when_the_chat_frame_keeps_it(
        site, host_site, browser_type, browser_type_launch_args, tmp_path, console):
    url = host_site.add(f"/own-storage-{site.key}.html", snippet_page(site.snippet, "Tea shop"))
    context = console.watch(chromium_with_third_party_storage(
        browser_type, browser_type_launch_args, tmp_path / "profile", allowed=True))
    try:
        requests, page = chat_and_reload(context, site, url, tmp_path)
        frame = chat_frame(page)
        assert frame_storage(frame) == "ok"
        token = frame.evaluate("k => localStorage.getItem(k)", STORAGE_KEY.format(key=site.key))
        assert token
        assert host_token(page, site.key) is None  # the fallback was not needed
        assert_token_in_no_cookie_and_no_url(requests, context, page, token)
    finally:
        context.close()


def test_with_third_party_storage_blocked_the_customer_page_keeps_the_token_and_the_chat_survives_a_reload(
        site, host_site, browser_type, browser_type_launch_args, tmp_path, console):
    url = host_site.add(f"/host-storage-{site.key}.html", snippet_page(site.snippet, "Tea shop"))
    context = console.watch(chromium_with_third_party_storage(
        browser_type, browser_type_launch_args, tmp_path / "profile", allowed=False))
    try:
        requests, page = chat_and_reload(context, site, url, tmp_path)
        frame = chat_frame(page)
        # Blocked for real: the frame cannot even read its storage...
        assert frame_storage(frame) == "SecurityError"
        # ...so the token that kept the conversation across the reload lives in the customer
        # page's storage, and is the one the frame sends.
        token = host_token(page, site.key)
        assert token
        assert any(r.headers.get(TOKEN_HEADER.lower()) == token for r in requests)
        assert page.locator(CHAT_FRAME).count() == 1
        assert_token_in_no_cookie_and_no_url(requests, context, page, token)
    finally:
        context.close()
