"""Deleting one's account in Chromium: the password again, then a banner on every dashboard
page until the grace period ends; signing in again and pressing "Cancel deletion" takes it
away. The Privacy & data page passes axe in each state."""

from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import PASSWORD, confirmed_user_over_http, log_in


def pending(live_server, email) -> int:
    return live_server.rows('SELECT COUNT(*) FROM deletion_request d JOIN "user" u '
                            "ON u.id = d.user_id WHERE u.email = ?", (email,))[0][0]


def test_deleting_the_account_shows_a_grace_banner_and_signing_in_cancels_it(page, live_server):
    email = confirmed_user_over_http(live_server, "leaver")
    log_in(page, email)
    page.goto("/dashboard/privacy")
    assert_accessible(page)
    form = page.locator("#delete-account-form")
    form.get_by_label("Your password").fill("not the password")
    form.get_by_role("button", name="Delete my account").click()
    expect(page.locator("#delete_account_password-error")).to_contain_text("not right")
    assert pending(live_server, email) == 0

    form = page.locator("#delete-account-form")
    form.get_by_label("Your password").fill(PASSWORD)
    form.get_by_role("button", name="Delete my account").click()
    page.wait_for_url("**/dashboard/privacy*")
    expect(page.locator("#account-deletion-state")).to_contain_text("Your account will be deleted on")
    assert pending(live_server, email) == 1

    page.goto("/dashboard/inbox")
    expect(page.locator("#deletion-banner")).to_contain_text("Your account will be deleted on")
    assert_accessible(page)

    # Signed out, then back in: the banner says it still waits, and one button cancels it.
    page.context.clear_cookies()
    log_in(page, email)
    page.locator("#deletion-banner").get_by_role("link", name="Cancel the deletion").click()
    page.wait_for_url("**/dashboard/privacy*")
    assert_accessible(page)
    page.locator("#deletion").get_by_role("button", name="Cancel deletion").click()
    page.wait_for_url("**/dashboard/privacy*")
    expect(page.locator("#deletion-banner")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete my account")).to_be_visible()
    assert pending(live_server, email) == 0
