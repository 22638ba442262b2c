"""Saved replies as an agent uses them, in Chromium: found as they type beside the reply field
(never the whole list in the page), chosen with the keyboard or a click, /shortcut expanded in
the reply; added and deleted on their own page without reloading it. axe checks each screen."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import HttpUser
from tests.e2e.inbox_browser import (  # noqa: F401  (fixtures, used by name)
    DESKTOP,
    PHONE,
    agent_page_fixture,
    guests_fixture,
    make_shop,
    open_inbox,
    open_row,
)

KEPT = [("ship", "We ship to every country in the EU within three days."),
        ("hours", "We are open from 9 to 5, Monday to Saturday."),
        *[(f"care-{i:02d}", f"Care tip number {i}: hand wash only.") for i in range(12)]]


@pytest.fixture(scope="module")
def shop(browser, live_server):
    shop = make_shop(browser, live_server, "saved")
    with HttpUser(live_server.url) as http:
        http.log_in(shop.owner)
        for shortcut, body in KEPT:
            http.post_form("/dashboard/saved-replies", "/dashboard/saved-replies",
                           shortcut=shortcut, body=body)
            assert http.last.status_code == 200, http.last.text[:500]
    return shop


def test_an_agent_finds_and_inserts_a_saved_reply_with_the_keyboard(agent_page, guests, shop):
    guests(shop, "ivy").say("Do you ship to Portugal?")
    page = agent_page(shop, DESKTOP)
    open_inbox(page)
    conv = open_row(page, "Portugal")
    assert page.locator("main").inner_html().count("Care tip number") == 0

    find = page.get_by_label("Insert a saved reply")
    find.focus()
    matches = page.get_by_role("list", name="Matching saved replies").get_by_role("button")
    expect(matches).to_have_count(8)  # on demand, and never the whole list
    find.press_sequentially("shi")
    expect(matches).to_have_count(1)
    expect(matches.first).to_contain_text("/ship")
    expect(page.get_by_role("status").filter(has_text="1 saved reply for “shi”")).to_be_attached()
    assert_accessible(page)

    find.fill("")
    find.press_sequentially("care")
    expect(matches).to_have_count(8)
    find.press("ArrowDown")
    expect(matches.nth(0)).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(matches.nth(1)).to_be_focused()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    expect(find).to_be_focused()
    find.fill("")
    find.press_sequentially("ship")
    expect(matches).to_have_count(1)
    find.press("ArrowDown")
    page.keyboard.press("Enter")
    reply = page.get_by_label("Reply", exact=True)
    expect(reply).to_be_focused()
    expect(reply).to_have_value("We ship to every country in the EU within three days.")

    # /shortcut and a space, typed in the reply, becomes its text.
    reply.press_sequentially(" Hours: /hours ")
    expect(reply).to_have_value("We ship to every country in the EU within three days. Hours: "
                                "We are open from 9 to 5, Monday to Saturday.")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator(f"#messages-{conv}")).to_contain_text("Monday to Saturday.")
    expect(reply).to_have_value("")
    assert page.errors == [], page.errors


def test_the_saved_replies_page_adds_and_deletes_without_reloading(agent_page, shop):
    page = agent_page(shop, DESKTOP)
    page.goto("/dashboard/saved-replies")
    page.evaluate("window.__sameDocument = true")
    listed = page.locator("#saved-list > li")
    expect(listed).to_have_count(len(KEPT))
    assert_accessible(page)

    page.get_by_label("Shortcut (typed as /shortcut)").fill("thanks")
    page.get_by_label("Text").fill("Thank you for shopping with us!")
    page.get_by_role("button", name="Save reply").click()
    expect(page.get_by_role("status").filter(has_text="Saved /thanks.")).to_be_visible()
    expect(listed.first).to_contain_text("/thanks — Thank you for shopping with us!")
    expect(page.get_by_label("Shortcut (typed as /shortcut)")).to_have_value("")

    page.get_by_label("Shortcut (typed as /shortcut)").fill("ship")  # taken
    page.get_by_label("Text").fill("Another text")
    page.get_by_role("button", name="Save reply").click()
    expect(page.get_by_text("A saved reply with this shortcut exists already.")).to_be_visible()
    assert_accessible(page)

    page.get_by_role("button", name="Delete /thanks").click()
    expect(page.get_by_role("button", name="Delete /thanks")).to_have_count(0)
    expect(listed).to_have_count(len(KEPT))
    page.get_by_label("Find saved replies").fill("care tip number 1")
    page.get_by_role("button", name="Find").click()
    expect(listed).to_have_count(3)  # 1, 10 and 11
    expect(page).to_have_url(re.compile(r"/dashboard/saved-replies\?q=care"))
    assert page.evaluate("window.__sameDocument === true"), "the page was loaded again"

    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert_accessible(page)
    # The refused save is answered 422, which Chromium reports; nothing else went wrong.
    assert [e for e in page.errors if "status of 422" not in e] == [], page.errors
