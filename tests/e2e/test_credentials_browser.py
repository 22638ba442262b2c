"""Credentials in the browser: the secret goes in once and never comes back to the page."""

from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible
from tests.e2e.conftest import log_in

SECRET = "pat-na1-7f3e2d1c0b9a8877-66554433-9f8e"


def test_an_owner_adds_a_credential_and_sees_it_only_masked(page, verified_user):
    email = verified_user("vault")
    log_in(page, email)
    page.goto("/dashboard/credentials")
    expect(page.get_by_role("heading", level=1)).to_have_text("Credentials")
    page.get_by_label("Platform").fill("HubSpot")
    page.get_by_label("Label").fill("CRM token")
    page.get_by_label("Secret: token, password or webhook URL").fill(SECRET)
    page.get_by_role("button", name="Encrypt and save").click()
    expect(page.get_by_role("cell", name="••••9f8e")).to_be_visible()
    assert SECRET not in page.content()
    assert_accessible(page)

    # A bad entry is refused beside its field, and the typed secret is not sent back.
    add = page.locator("#credential-form")
    add.get_by_label("Platform").fill("")
    add.get_by_label("Secret: token, password or webhook URL").fill(SECRET)
    add.get_by_role("button", name="Encrypt and save").click()
    expect(page.get_by_text("Name the platform, e.g. HubSpot.")).to_be_visible()
    assert SECRET not in page.content()
