"""A site set to "load only after consent": on its pages the loader creates nothing (no button,
no frame) and touches no storage until the page calls Lumnar.start(), as the site's page says;
a page that had the visitor's consent before the loader ran says so with
window.Lumnar = {consented: true}. Switched off, the button shows at once, as before."""

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import snippet_page
from tests.e2e.widget_browser import (  # noqa: F401  (console_fixture: the `console` fixture)
    CHAT_FRAME,
    console_fixture,
    make_widget_site,
    open_chat,
    say,
)

CONSENT_CALL = "if (window.Lumnar) { Lumnar.start(); } else { window.Lumnar = { consented: true }; }"
# What the page's own scripts can see of anything stored: both storages, and cookies.
STORAGE = "() => [localStorage.length, sessionStorage.length, document.cookie]"


@pytest.fixture(scope="module")
def site(live_server, host_site):
    made = make_widget_site(live_server, [host_site.origin])
    made.update(consent_required="y")
    yield made
    made.owner.http.close()


def load(new_context, console, url):
    page = console.watch(new_context()).new_page()
    with page.expect_response(lambda r: r.url.split("?")[0].endswith("/status")) as status:
        page.goto(url)
    assert status.value.json() == {**status.value.json(), "allowed": True, "consent": True}
    page.wait_for_load_state("networkidle")
    return page


def test_nothing_is_shown_or_stored_until_the_page_says_the_visitor_agreed(
        new_context, console, site, host_site):
    url = host_site.add(f"/consent-{site.key}.html", snippet_page(site.snippet))
    page = load(new_context, console, url)
    assert page.locator("[data-lumnar-launcher], iframe").count() == 0
    assert page.evaluate(STORAGE) == [0, 0, ""]

    # The consent call as the site's page gives it, run by the page once the visitor agrees.
    page.evaluate(CONSENT_CALL)
    chat = open_chat(page)
    say(chat, "Now I agreed: hello!")
    expect(page.locator(CHAT_FRAME)).to_be_visible()

    # A second call changes nothing: one button, one frame.
    page.evaluate("Lumnar.start()")
    assert page.locator("[data-lumnar-launcher]").count() == 1
    assert page.locator(CHAT_FRAME).count() == 1


def test_consent_given_before_the_loader_ran_starts_it_at_once(new_context, console, site,
                                                                host_site):
    # The page's consent tool answered first and ran the same call: no Lumnar yet, so it left
    # the flag for the loader.
    early = f"<script>{CONSENT_CALL}</script>"
    url = host_site.add(f"/consented-{site.key}.html", snippet_page(early + site.snippet))
    page = load(new_context, console, url)
    expect(page.get_by_role("button", name="Chat with us")).to_be_visible()


def test_without_the_option_the_button_shows_at_once(new_context, console, live_server,
                                                     host_site):
    plain = make_widget_site(live_server, [host_site.origin])
    try:
        page = console.watch(new_context()).new_page()
        page.goto(host_site.add(f"/no-consent-{plain.key}.html", snippet_page(plain.snippet)))
        expect(page.get_by_role("button", name="Chat with us")).to_be_visible()
        assert page.evaluate("typeof Lumnar.start") == "function"  # harmless there
    finally:
        plain.owner.http.close()
