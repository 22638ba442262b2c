"""Nothing is stored on a device beyond app/policies/cookies.py's table: a browser walks the
public pages, the dashboard after log-in and the demo shop with the chat opened and a message
sent, and every cookie the browser holds and every localStorage or sessionStorage key any
frame (the chat's iframe included) ever wrote, even one removed at once, must be listed."""

import pytest
from playwright.sync_api import expect

from app.policies.cookies import COOKIES, listed
from tests.e2e.conftest import confirmed_user_over_http, log_in
from tests.e2e.widget_browser import CHAT_FRAME, open_chat, say

# Before any page script runs, in every frame: note each key written to either storage, and
# each cookie written by script. Only observes; the page's own code runs unchanged.
RECORD_WRITES = """(() => {
  const seen = [];
  Object.defineProperty(window, "__storedOnDevice", {value: seen});
  const setItem = Storage.prototype.setItem;
  Storage.prototype.setItem = function (key, value) {
    let kind = "sessionStorage";
    try { if (this === window.localStorage) { kind = "localStorage"; } } catch (e) {}
    seen.push([kind, String(key)]);
    return setItem.apply(this, arguments);
  };
  const cookie = Object.getOwnPropertyDescriptor(Document.prototype, "cookie");
  Object.defineProperty(Document.prototype, "cookie", {
    configurable: true,
    get() { return cookie.get.call(this); },
    set(value) { seen.push(["cookie", String(value).split("=")[0].trim()]); cookie.set.call(this, value); },
  });
})();"""

# What a frame holds now, and what it wrote since it loaded.
READ_FRAME = """() => {
  const keys = (s) => { try { return Object.keys(s); } catch (e) { return []; } };
  return {
    written: window.__storedOnDevice || [],
    held: [...keys(localStorage).map(k => ["localStorage", k]),
           ...keys(sessionStorage).map(k => ["sessionStorage", k])],
  };
}"""

PUBLIC_PAGES = ["/", "/pricing", "/privacy", "/privacy/providers", "/cookies", "/signup", "/login"]


class DeviceWatch:
    """Everything a context stored on the device, page after page."""

    def __init__(self, context):
        self.context = context
        self.found: dict[tuple[str, str], str] = {}  # (kind, name) -> where first seen
        context.add_init_script(RECORD_WRITES)

    def look(self, page, where: str) -> None:
        for frame in page.frames:
            if frame.url in ("", "about:blank"):
                continue
            state = frame.evaluate(READ_FRAME)
            for kind, name in [*state["written"], *state["held"]]:
                self.found.setdefault((kind, name), f"{where} ({frame.url})")
        for cookie in self.context.cookies():
            self.found.setdefault(("cookie", cookie["name"]), f"{where} ({cookie['domain']})")

    def unlisted(self) -> dict:
        return {f"{kind} {name!r}": where for (kind, name), where in self.found.items()
                if not listed(kind, name)}


@pytest.fixture
def watch(new_context):
    return DeviceWatch(new_context())


def test_the_table_lists_each_item_once_with_every_column_filled():
    seen = set()
    for item in COOKIES:
        assert all([item.name, item.kind, item.purpose, item.lifetime, item.set_by, item.origin])
        assert item.kind in ("cookie", "localStorage", "sessionStorage")
        assert (item.kind, item.name, item.origin) not in seen
        seen.add((item.kind, item.name, item.origin))


def test_public_pages_and_the_dashboard_store_nothing_beyond_the_table(live_server, watch):
    page = watch.context.new_page()
    for path in PUBLIC_PAGES:
        page.goto(path)
        watch.look(page, path)

    email = confirmed_user_over_http(live_server, "storage")
    log_in(page, email)
    watch.look(page, "after log-in")
    # Every page of the dashboard's menu, as the person reaches them.
    links = page.locator("nav.sidenav a").evaluate_all("links => links.map(a => a.pathname)")
    assert "/dashboard/inbox" in links and len(links) >= 3, links
    for path in links:
        page.goto(path)
        watch.look(page, path)
    assert ("cookie", "lumnar_session") in watch.found  # the walk did log in
    assert watch.unlisted() == {}


def test_the_demo_shop_and_its_chat_store_nothing_beyond_the_table(watch):
    page = watch.context.new_page()
    page.goto("/demo/shop")
    watch.look(page, "demo shop")
    chat = open_chat(page)
    say(chat, "Do you ship mugs abroad?")
    expect(page.locator(CHAT_FRAME)).to_be_visible()
    watch.look(page, "demo shop, chat open, message sent")
    page.reload()
    open_chat(page)
    watch.look(page, "demo shop, back again")
    # The walk did reach the chat: its visitor token is kept (and listed).
    assert any(kind == "localStorage" and name.startswith("lumnar-visitor:")
               for kind, name in watch.found), watch.found
    assert watch.unlisted() == {}
