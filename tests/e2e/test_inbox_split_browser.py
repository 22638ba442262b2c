"""The inbox as agents work in it, in Chromium: the list and the open conversation side by side
on a desktop (switching without a page load, the address following, back and forward, a reload
showing the same), separate screens on a phone, live updates reaching both panes, keyboard
shortcuts that never fire while typing, a conversation on screen staying read, and an empty
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


def test_keyboard_shortcuts_move_reply_resolve_search_and_never_fire_while_typing(
        agent_page, guests, shop):
    texts = ["Shortcut one: gift wrap?", "Shortcut two: bulk prices?", "Shortcut three: returns?"]
    for name, text in zip(["dan", "eve", "fay"], texts, strict=True):
        guests(shop, name).say(text)
    page = agent_page(shop, DESKTOP)
    open_inbox(page)
    page.evaluate("window.__sameDocument = true")
    links = page.locator("#inbox .conversations > li > a")
    ids = [href_id(links.nth(i)) for i in range(3)]  # newest first: three, two, one

    page.keyboard.press("j")
    showing(page, ids[0], texts[2])
    page.keyboard.press("j")
    showing(page, ids[1], texts[1])
    page.keyboard.press("k")
    showing(page, ids[0], texts[2])
    # Held modifiers: nothing. (Had they moved, the next "j" would land further down.)
    for chord in ("Shift+J", "Alt+j", "Control+j", "Meta+j"):
        page.keyboard.press(chord)
    page.keyboard.press("j")
    showing(page, ids[1], texts[1])

    # r: the reply field; keys typed there are text, not shortcuts.
    page.keyboard.press("r")
    reply = page.get_by_label("Reply", exact=True)
    expect(reply).to_be_focused()
    page.keyboard.type("jk e/?")
    expect(reply).to_have_value("jk e/?")
    expect(page).to_have_url(re.compile(rf"/dashboard/conversations/{ids[1]}$"))
    expect(page.get_by_role("dialog")).to_be_hidden()
    page.keyboard.press("Escape")  # leaves the field: shortcuts work again
    expect(reply).not_to_be_focused()

    # Another field: the visitor's name.
    page.get_by_label("Visitor name").fill("")
    page.get_by_label("Visitor name").press_sequentially("jjj")
    expect(page).to_have_url(re.compile(rf"/dashboard/conversations/{ids[1]}$"))
    page.get_by_label("Visitor name").blur()

    # e: resolve the open conversation.
    page.keyboard.press("e")
    expect(page.locator(f"#conv-status-{ids[1]}")).to_contain_text("Status: Resolved")

    # /: the search field.
    page.keyboard.press("/")
    search = page.get_by_label("Search messages")
    expect(search).to_be_focused()
    page.keyboard.type("bulk")
    expect(search).to_have_value("bulk")
    page.keyboard.press("Escape")

    # ?: every shortcut, in a dialog that axe finds sound; Escape closes it.
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Open the next conversation in the list")
    assert_accessible(page)
    page.keyboard.press("j")  # inside the dialog, keys do nothing else
    expect(page).to_have_url(re.compile(rf"/dashboard/conversations/{ids[1]}$"))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    # The same list from a real button, closed by its own.
    page.get_by_role("button", name="Keyboard shortcuts").click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    assert page.evaluate("window.__sameDocument === true"), "a shortcut loaded a page"
    assert page.errors == [], page.errors


# Every state the unread badge, the tab's title and the open conversation's row go through.
WATCH_UNREAD = """(rowId) => {
  window.__seen = [];
  window.__rowUnread = false;
  const look = () => {
    const badge = document.getElementById("unread-count");
    window.__seen.push([badge ? parseInt(badge.getAttribute("data-unread"), 10) : null, document.title]);
    const row = document.getElementById(rowId);
    if (row && (row.classList.contains("unread") || row.querySelector(".badge"))) window.__rowUnread = true;
  };
  look();
  new MutationObserver(look).observe(document.documentElement,
    {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def test_a_conversation_open_on_screen_stays_read(browser, live_server, agent_page, guests,
                                                  new_context):
    shop = make_shop(browser, live_server, "read")  # its own: nothing else unread
    gus, hal = guests(shop, "gus"), guests(shop, "hal")
    gus.say("Stays read: first words")
    hal.say("Stays read: someone else")
    page = agent_page(shop, DESKTOP)
    open_inbox(page)
    open_row(page, "someone else")  # read
    conv = open_row(page, "first words")  # read, and open on screen
    expect(page.locator("#unread-count")).to_have_attribute("data-unread", "0")
    page.evaluate(WATCH_UNREAD, f"conv-{conv}")

    for i in range(3):
        gus.say(f"Stays read: more words {i}")
        expect(page.locator(f"#messages-{conv}")).to_contain_text(f"more words {i}")
    # The server has it read too: another tab's inbox shows no unread mark on it.
    other = new_context(storage_state=shop.agent_state).new_page()
    other.goto("/dashboard/inbox")
    expect(other.locator(f"#conv-{conv}")).not_to_have_class(re.compile(r"\bunread\b"))
    expect(other.locator("#unread-count")).to_have_attribute("data-unread", "0")
    other.close()

    # A line in a conversation that is not on screen still counts.
    hal.say("Stays read: hello again")
    expect(page.locator("#unread-count")).to_have_attribute("data-unread", "1")
    seen = page.evaluate("window.__seen")
    cut = next(i for i, (n, _) in enumerate(seen) if n == 1)  # Hal's line
    assert all(n == 0 and not title.startswith("(") for n, title in seen[:cut]), seen
    assert page.evaluate("window.__rowUnread") is False, "the open conversation's row showed unread"
    expect(page).to_have_title(re.compile(r"^\(1\) "))
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
