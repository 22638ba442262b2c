"""No console noise from the widget, on the customer's page or in the chat frame: the frame
greets only the page that framed it (the site's other allowed origins used to cost one
postMessage "target origin does not match" warning each), and htmx never writes an inline
style the frame's CSP refuses, even into a field whose style the browser or an extension
changed (a resized text box). A same-site page (127.0.0.1 on another port) shows the frame's
warnings on its console; a cross-site frame's postMessage complaints are not reported, so
that is where these run; the demo shop (Lumnar's own origin) too, on a desktop and a phone."""

import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import HostSite, snippet_page
from tests.e2e.widget_browser import (  # noqa: F401  (console_fixture: the `console` fixture)
    CHAT_FRAME,
    chat_frame,
    console_fixture,
    make_widget_site,
    open_chat,
    say,
)


@pytest.fixture(scope="module")
def same_site_shop():
    """A customer's site on 127.0.0.1 (another port than Lumnar's): another origin, but the
    same site, so the chat frame runs in the page's own process and Chromium reports what
    the frame's postMessage calls make it say."""
    shop = HostSite("127.0.0.1").start()
    yield shop
    shop.stop()


@pytest.fixture(scope="module")
def site(live_server, host_site, same_site_shop):
    made = make_widget_site(live_server, [same_site_shop.origin, host_site.origin,
                                          "https://www.tea.example"])
    yield made
    made.owner.http.close()


def test_no_postmessage_warnings_from_the_sites_other_allowed_origins(
        new_context, console, site, same_site_shop):
    page = console.watch(new_context()).new_page()
    page.goto(same_site_shop.add(f"/quiet-{site.key}.html", snippet_page(site.snippet)))
    chat = open_chat(page)
    say(chat, "Is the green tea organic?")
    site.reply(site.conversation_id("Is the green tea organic?"), "It is.")
    expect(chat.locator("#messages > li.w-msg-agent")).to_have_count(1)
    page.get_by_role("button", name="Chat with us").click()  # closed
    page.get_by_role("button", name="Chat with us").click()  # and open again
    expect(chat.get_by_label("Message", exact=True)).to_be_focused()
    # The console guard (checked as the test ends) has seen no warning.


@pytest.mark.parametrize("viewport", [None, {"width": 375, "height": 700}],
                         ids=["desktop", "phone"])
def test_the_demo_shop_chats_without_a_console_message(new_context, console, viewport):
    """The demo shop is on Lumnar's own origin, and its site allows both names of this
    machine: before, the frame's greeting to the other name was a warning on every open."""
    options = {"viewport": viewport, "is_mobile": True, "has_touch": True} if viewport else {}
    page = console.watch(new_context(**options)).new_page()
    page.goto("/demo/shop")
    expect(page.get_by_role("button", name="Chat with us")).to_be_visible()
    assert_accessible(page)
    chat = open_chat(page)
    say(chat, "Hello from the demo")
    expect(chat.get_by_text("We'll answer by e-mail.")).to_be_visible()
    assert page.locator(CHAT_FRAME).bounding_box()["width"] <= (viewport or {"width": 2000})["width"]


def test_a_field_styled_by_the_browser_swaps_without_a_csp_error(new_context, console, site,
                                                                  same_site_shop):
    """htmx, swapping the message form after each message, copies the old form's attributes
    onto the new one by id, the style attribute among them by default: an inline style, which
    the frame's CSP refuses. A text box the visitor resized (or an extension decorated) has
    one. The frame's htmx settles only class, width and height."""
    page = console.watch(new_context()).new_page()
    page.goto(same_site_shop.add(f"/resized-{site.key}.html", snippet_page(site.snippet)))
    chat = open_chat(page)
    say(chat, "First")
    chat_frame(page).evaluate("document.getElementById('w-body').style.height = '90px'")
    say(chat, "Second, from a taller box")
    say(chat, "Third")
    expect(chat.locator("#messages > li")).to_have_count(3)
