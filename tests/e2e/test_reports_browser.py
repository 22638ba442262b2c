"""The Reports page in Chromium against the live server: after visitors wrote on the shop's
site, the owner sees the conversations-per-day chart and its table, changes the period with a
link (swapped in by htmx, the address following), downloads a table as CSV, and every state
passes axe with no Content Security Policy complaint."""

import re
from pathlib import Path

from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import watch_csp
from tests.e2e.inbox_browser import (  # noqa: F401  (fixtures, used by name)
    agent_page_fixture,
    guests_fixture,
    make_shop,
)


def test_the_owner_reads_the_report_changes_its_period_and_downloads_a_table(
        browser, live_server, guests, agent_page):
    shop = make_shop(browser, live_server, "reports")
    for name in ("ann", "ben"):
        guests(shop, name).say("Do you ship teapots abroad?")
    page = agent_page(shop)
    complaints = watch_csp(page)

    page.goto("/dashboard")
    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Reports").click()
    page.wait_for_url("**/dashboard/reports")
    expect(page.get_by_role("heading", name="Reports", level=1)).to_be_visible()
    chart = page.get_by_role("img", name="Conversations per day over the last 30 days")
    expect(chart).to_be_visible()
    expect(chart.locator("rect.bar-ok")).to_have_count(1)  # both came today
    sites = page.get_by_role("table", name="Conversations and times per site, last 30 days")
    expect(sites.get_by_role("row", name=re.compile("Ceramics shop"))).to_contain_text("2")
    agents = page.get_by_role("table", name="Conversations and times per agent, last 30 days")
    expect(agents.get_by_role("row", name=re.compile("No reply yet"))).to_be_visible()
    page.get_by_text("Each day as a table").click()
    days = page.get_by_role("table", name="Conversations and times per day, last 30 days")
    expect(days.locator("tbody tr")).to_have_count(30)
    assert_accessible(page)

    page.get_by_role("link", name="Last 7 days").click()
    expect(page.get_by_role("link", name="Last 7 days")).to_have_attribute("aria-current", "page")
    page.wait_for_url("**/dashboard/reports?days=7")
    expect(page.get_by_role("img", name="Conversations per day over the last 7 days")).to_be_visible()
    expect(page.get_by_role("link", name="Last 30 days")).not_to_have_attribute("aria-current", "page")
    assert_accessible(page)

    with page.expect_download() as info:
        page.get_by_role("link", name="Download by site (CSV)").click()
    lines = Path(info.value.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("site,conversations,answered")
    assert lines[1].startswith("Ceramics shop,2,0,")
    assert complaints == []
