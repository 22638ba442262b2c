"""Restriction of processing in Chromium: an owner turns it on from the Privacy & data page,
every dashboard page shows the banner, the automations page says they cannot run, lifting it
takes the banner away; the pages and the public retention page pass axe."""

from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import confirmed_user_over_http, log_in


def test_an_owner_restricts_processing_and_every_page_says_automations_cannot_run(page, live_server):
    email = confirmed_user_over_http(live_server, "restrict")
    log_in(page, email)
    page.goto("/dashboard/privacy")
    expect(page.locator("#restriction-state")).to_contain_text("not restricted")
    assert_accessible(page)
    page.get_by_role("button", name="Restrict processing").click()
    page.wait_for_url("**/dashboard/privacy*")
    banner = page.locator("#restricted")
    expect(banner).to_contain_text("Processing is restricted for this workspace.")
    expect(page.locator("#restriction-state")).to_contain_text("Processing is restricted")
    assert_accessible(page)

    page.goto("/dashboard/automations")
    expect(page.locator("#restricted")).to_contain_text("automations are paused and cannot run")
    assert_accessible(page)
    assert live_server.rows("SELECT w.processing_restricted FROM workspace w JOIN membership m "
                            "ON m.workspace_id = w.id JOIN \"user\" u ON u.id = m.user_id "
                            "WHERE u.email = ?", (email,))[0][0]

    page.goto("/dashboard/privacy")
    page.get_by_role("button", name="Lift the restriction").click()
    page.wait_for_url("**/dashboard/privacy*")
    expect(page.locator("#restricted")).to_have_count(0)
    expect(page.locator("#restriction-state")).to_contain_text("not restricted")


def test_the_retention_page_is_public_and_accessible(page, live_server):
    page.goto("/privacy/retention")
    expect(page.get_by_role("heading", name="What we keep and for how long")).to_be_visible()
    expect(page.locator("#keep-chat")).to_be_visible()
    assert_accessible(page)
