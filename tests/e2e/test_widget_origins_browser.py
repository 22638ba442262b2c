"""Where the widget may load, as a customer finds out: on a page whose origin the site does not
allow, the loader asks Lumnar first and shows nothing at all (no button, no frame, no visitor),
and writes exactly one console message naming the origin to add; the site's page lists the
origins refused in the last 7 days and when the widget last loaded from each allowed one."""

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import log_in, snippet_page
from tests.e2e.widget_browser import (  # noqa: F401  (console_fixture: the `console` fixture)
    console_fixture,
    make_widget_site,
)


@pytest.fixture(scope="module")
def site(live_server, host_site):
    made = make_widget_site(live_server, [host_site.origin, "https://www.tea.example"])
    yield made
    made.owner.http.close()


def paths(requests) -> list[str]:
    return [urlsplit(r.url).path for r in requests]


def test_a_page_on_an_origin_not_allowed_shows_nothing_and_says_what_to_add(
        new_context, console, site, evil_site, live_server):
    message = (f"Lumnar chat is not shown on this page: {evil_site.origin} is not an allowed "
               f"origin of the site “Tea shop”. To show the chat here, add {evil_site.origin} "
               "to the allowed origins on the site's page in the Lumnar dashboard "
               "(Sites → Tea shop).")
    console.expect(message, times=2)  # one per page view: the test loads it twice
    page = console.watch(new_context()).new_page()
    requests = []
    page.on("request", lambda request: requests.append(request))
    url = evil_site.add(f"/not-allowed-{site.key}.html", snippet_page(site.snippet, "Elsewhere"))
    with page.expect_console_message(lambda m: evil_site.origin in m.text) as said:
        page.goto(url)
    assert said.value.type == "error" and said.value.text == message
    page.wait_for_load_state("networkidle")
    assert len(console.matching(message)) == 1  # once for this page view

    assert page.locator("[data-lumnar-launcher]").count() == 0
    assert page.locator("iframe").count() == 0
    assert page.get_by_role("button").count() == 0
    seen = paths(requests)
    assert f"/widget/{site.key}/status" in seen, seen
    assert f"/widget/{site.key}" not in seen and f"/widget/{site.key}/visitors" not in seen, seen
    assert page.evaluate("localStorage.length") == 0

    # The owner sees it on the site's page, with how often it tried.
    page.reload()
    page.wait_for_load_state("networkidle")
    owner = new_context().new_page()
    log_in(owner, site.owner_email)
    owner.goto(site.page_path)
    refused = owner.get_by_role("table", name="Refused in the last 7 days")
    row = refused.get_by_role("row").filter(has_text=evil_site.origin)
    expect(row).to_have_count(1)
    # Two page views; the second within the minute is counted with the next write (at most one
    # write a minute per origin and process), so the row says 1 or 2.
    expect(row.get_by_role("cell").nth(1)).to_have_text(re.compile(r"^[12]$"))
    assert_accessible(owner)


def test_the_site_page_says_when_the_widget_last_loaded_from_each_allowed_origin(
        new_context, console, site, host_site, live_server):
    owner = new_context().new_page()
    log_in(owner, site.owner_email)
    owner.goto(site.page_path)
    loaded = owner.get_by_role("table", name="Where the widget loads")
    expect(loaded.get_by_role("row").filter(has_text="https://www.tea.example")).to_contain_text(
        "Not yet")

    visitor = console.watch(new_context()).new_page()
    visitor.goto(host_site.add(f"/loaded-{site.key}.html", snippet_page(site.snippet)))
    expect(visitor.locator("[data-lumnar-launcher]")).to_be_visible()
    owner.reload()
    row = loaded.get_by_role("row").filter(has_text=host_site.origin)
    expect(row).to_contain_text(re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"))
    expect(loaded.get_by_role("row").filter(has_text="https://www.tea.example")).to_contain_text(
        "Not yet")


def test_an_unknown_site_key_shows_nothing_and_says_so_once(new_context, console, host_site,
                                                            live_server):
    console.expect("Lumnar chat: no site has the key “site_nope”", times=1)
    page = console.watch(new_context()).new_page()
    snippet = f'<script src="{live_server.url}/widget.js" data-site="site_nope" async></script>'
    with page.expect_console_message(lambda m: "site_nope" in m.text):
        page.goto(host_site.add("/unknown-key.html", snippet_page(snippet)))
    page.wait_for_load_state("networkidle")
    assert page.locator("[data-lumnar-launcher], iframe").count() == 0
