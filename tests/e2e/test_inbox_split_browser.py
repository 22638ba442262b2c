"""The inbox as agents work in it, in Chromium: the list and the open conversation side by side
on a desktop (switching without a page load, the address following, back and forward, a reload
showing the same), separate screens on a phone, live updates reaching both panes, and an empty
inbox saying what to do next. axe checks each screen."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import HttpUser, confirmed_user_over_http, log_in
from tests.e2e.inbox_browser import (  # noqa: F401  (fixtures, used by name)
    DESKTOP,
    PHONE,
    agent_page_fixture,
    guests_fixture,
    href_id,
    make_shop,
    open_inbox,
    open_row,
    row,
    showing,
)


@pytest.fixture(scope="module")
def shop(browser, live_server):
    return make_shop(browser, live_server, "split")


def test_list_and_conversation_side_by_side_switch_without_a_page_load(agent_page, guests, shop):
    ann, bob = guests(shop, "ann"), guests(shop, "bob")
    ann.say("Do your mugs survive a dishwasher?")
    bob.say("Can I pick up my order in the shop?")
    page = agent_page(shop, DESKTOP)
    open_inbox(page)
    page.evaluate("window.__sameDocument = true")  # a page load would drop it
    conversations = page.get_by_role("list", name="Conversations")
    pane = page.locator("#conversation-pane")
    expect(pane.get_by_role("heading", name="No conversation open")).to_be_visible()
    assert_accessible(page)

    first = open_row(page, "dishwasher")
    expect(conversations).to_be_visible()  # both panes at once
    link = page.locator(f"#conv-{first} > a")  # its preview changes as the visitor writes
    expect(link).to_have_attribute("aria-current", "true")
    expect(page).to_have_title(re.compile(rf"^(\(\d+\) )?{re.escape(ann.email)} · Lumnar$"))
    assert_accessible(page)

    # Live: the open conversation takes the visitor's new line; the list moves the other one
    # up with its unread mark.
    ann.say("I mean the blue ones.")
    expect(page.locator(f"#messages-{first}")).to_contain_text("I mean the blue ones.")
    bob.say("Saturday morning?")
    top = conversations.locator("> li").first
    expect(top).to_contain_text("Saturday morning?")
    expect(top).to_contain_text("unread")

    second = open_row(page, "Saturday morning?")
    expect(row(page, "Saturday morning?").get_by_role("link")).to_have_attribute("aria-current", "true")
    expect(link).not_to_have_attribute("aria-current", "true")
    expect(page.locator(f"#conversation-{first}")).to_have_count(0)

    page.go_back()
    showing(page, first, "I mean the blue ones.")
    expect(conversations).to_be_visible()
    page.go_forward()
    showing(page, second, "Saturday morning?")
    assert page.evaluate("window.__sameDocument === true"), "switching loaded a page"

    # Live updates still reach both panes after the history was walked.
    bob.say("Or Sunday.")
    expect(page.locator(f"#messages-{second}")).to_contain_text("Or Sunday.")

    page.reload()
    showing(page, second, "Or Sunday.")
    expect(conversations).to_be_visible()
    expect(row(page, "Or Sunday.").get_by_role("link")).to_have_attribute("aria-current", "true")
    assert_accessible(page)
    assert page.errors == [], page.errors


def test_a_phone_shows_the_list_and_the_conversation_as_separate_screens(agent_page, guests, shop):
    cara = guests(shop, "cara")
    cara.say("Is the teapot glaze food safe?")
    page = agent_page(shop, PHONE)
    open_inbox(page)
    conversations = page.get_by_role("list", name="Conversations")
    pane = page.locator("#conversation-pane")
    expect(conversations).to_be_visible()
    expect(pane).to_be_hidden()
    assert_accessible(page)

    conv = open_row(page, "teapot glaze")
    expect(conversations).to_be_hidden()
    expect(page.get_by_role("link", name="All conversations")).to_be_visible()
    expect(page.get_by_label("Reply", exact=True)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "wider than a phone"
    assert_accessible(page)

    cara.say("It is for my grandmother.")
    expect(page.locator(f"#messages-{conv}")).to_contain_text("It is for my grandmother.")

    page.go_back()
    expect(conversations).to_be_visible()
    expect(pane).to_be_hidden()
    page.go_forward()
    showing(page, conv, "grandmother")
    expect(conversations).to_be_hidden()

    page.reload()  # the conversation's own address: the conversation alone
    showing(page, conv, "grandmother")
    expect(conversations).to_be_hidden()
    page.get_by_role("link", name="All conversations").click()
    expect(page).to_have_url(re.compile(r"/dashboard/inbox$"))
    expect(conversations).to_be_visible()
    assert page.errors == [], page.errors


def test_an_empty_inbox_says_to_add_the_widget_first(browser, live_server, new_context):
    owner = confirmed_user_over_http(live_server, "empty")
    page = new_context(viewport=DESKTOP).new_page()
    log_in(page, owner)
    empty = page.locator("#inbox .empty-state")
    expect(empty).to_contain_text("No conversations yet: add the chat to your website first.")
    assert_accessible(page)
    empty.get_by_role("link", name="Sites page").click()
    expect(page).to_have_url(re.compile(r"/dashboard/sites$"))

    with HttpUser(live_server.url) as http:
        http.log_in(owner)
        site_id, _ = http.create_site("Corner shop", ["https://corner.example.com"])
    page.goto("/dashboard/inbox")
    expect(empty).to_contain_text("No conversations yet: add the widget to your site.")
    empty.get_by_role("link", name="Corner shop's settings").click()
    expect(page).to_have_url(re.compile(rf"/dashboard/sites/{site_id}$"))
    page.set_viewport_size(PHONE)
    page.goto("/dashboard/inbox")
    expect(empty).to_be_visible()
    assert_accessible(page)
