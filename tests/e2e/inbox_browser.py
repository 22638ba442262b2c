"""Shared pieces of the inbox's browser tests (test_inbox_*_browser.py): a shop made over plain
HTTP, visitors who write through the widget's own routes (what its frame posts), and the agent's
dashboard in Chromium at a desktop's or a phone's size. A test module imports the fixtures by
their function names (`guests_fixture` is the fixture `guests`)."""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import (
    ACTION_TIMEOUT_MS,
    HttpUser,
    confirmed_user_over_http,
    log_in,
    unique_email,
)

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}


@dataclass
class InboxShop:
    owner: str
    site_id: int
    site_key: str
    agent_state: dict  # the owner's logged-in cookies


def make_shop(browser, live_server, label: str = "inbox") -> InboxShop:
    owner = confirmed_user_over_http(live_server, label)
    with HttpUser(live_server.url) as http:
        http.log_in(owner)
        site_id, key = http.create_site("Ceramics shop", ["https://shop.example.com"])
    ctx = browser.new_context(base_url=live_server.url)
    ctx.set_default_timeout(ACTION_TIMEOUT_MS)
    try:
        log_in(ctx.new_page(), owner)
        state = ctx.storage_state()
    finally:
        ctx.close()
    return InboxShop(owner, site_id, key, state)


class Guest:
    """A visitor on the shop's page, writing in its chat: the widget's own routes over HTTP
    (the frame's token in its header), so that a test can make many quickly."""

    def __init__(self, base_url: str, site_key: str, name: str):
        self.http = httpx.Client(base_url=base_url, timeout=10)
        self.site_key = site_key
        self.email = f"{name}-{unique_email('v').split('@')[0]}@example.com"
        answer = self.http.post(f"/widget/{site_key}/visitors", data={"page": "https://shop.example.com/"})
        assert answer.status_code == 200, answer.text
        self.token = answer.json()["token"]
        self.said = 0

    def say(self, body: str) -> None:
        data = {"body": body}
        if not self.said:  # the first message leaves an e-mail: taken whether or not the team is in
            data["email"] = self.email
        answer = self.http.post(f"/widget/{self.site_key}/messages", data=data,
                                headers={"X-Lumnar-Visitor": self.token, "HX-Request": "true"})
        assert answer.status_code == 200, answer.text
        self.said += 1

    def close(self) -> None:
        self.http.close()


@pytest.fixture(name="guests")
def guests_fixture(live_server):
    """guests(shop, name) -> a Guest; all closed after the test."""
    made = []

    def make(shop: InboxShop, name: str) -> Guest:
        guest = Guest(live_server.url, shop.site_key, name)
        made.append(guest)
        return guest

    yield make
    for guest in made:
        guest.close()


@pytest.fixture(name="agent_page")
def agent_page_fixture(new_context):
    """agent_page(shop, viewport) -> the owner's dashboard in a fresh tab of that size, its
    console errors collected in page.errors."""

    def make(shop: InboxShop, viewport=DESKTOP):
        page = new_context(storage_state=shop.agent_state, viewport=viewport).new_page()
        page.errors = []
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        return page

    return make


def open_inbox(page) -> None:
    page.goto("/dashboard/inbox")
    expect(page.get_by_text("Live updates: connected")).to_be_visible()


def row(page, text: str):
    """The list's row showing `text`."""
    return page.locator("#inbox .conversations > li").filter(has_text=text)


def conversation_id(page) -> int:
    """The id in the page's address (/dashboard/conversations/<id>)."""
    found = re.fullmatch(r"/dashboard/conversations/(\d+)", urlsplit(page.url).path)
    assert found, page.url
    return int(found.group(1))


def href_id(link) -> int:
    return int(re.search(r"/dashboard/conversations/(\d+)", link.get_attribute("href")).group(1))


def open_row(page, text: str) -> int:
    """Click the row showing `text`; wait until its conversation is open: its id."""
    link = row(page, text).get_by_role("link")
    conv = href_id(link)
    link.click()
    showing(page, conv, text)
    return conv


def showing(page, conv: int, text: str) -> None:
    """The address names conversation `conv` and its pane shows `text`."""
    expect(page).to_have_url(re.compile(rf"/dashboard/conversations/{conv}(\?.*)?$"))
    expect(page.locator(f"#messages-{conv}")).to_contain_text(text)
