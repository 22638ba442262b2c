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


def test_the_credential_form_shows_only_the_fields_of_the_chosen_kind(page, verified_user):
    log_in(page, verified_user("kinds"))
    page.goto("/dashboard/credentials")
    form = page.locator("#credential-form")
    username, secret = form.get_by_label("Username (for a username and password)"), \
        form.get_by_label("Secret: token, password or webhook URL")
    refresh, others = form.get_by_label("Refresh token (for an OAuth pair)"), \
        form.get_by_label("Other secrets, one “name = value” a line")

    form.get_by_label("Kind").select_option(label="API token")  # the first kind
    expect(secret).to_be_visible()
    for hidden in (username, refresh, others):
        expect(hidden).to_be_hidden()

    form.get_by_label("Kind").select_option(label="Username and password")
    expect(username).to_be_visible()
    expect(secret).to_be_visible()
    expect(refresh).to_be_hidden()

    form.get_by_label("Kind").select_option(label="OAuth token pair")
    expect(refresh).to_be_visible()
    expect(username).to_be_hidden()

    form.get_by_label("Kind").select_option(label="Other secrets (name = value lines)")
    expect(others).to_be_visible()
    for hidden in (username, secret, refresh):
        expect(hidden).to_be_hidden()
    assert_accessible(page)

    # A refused save comes back as a new form (htmx): still only the chosen kind's fields.
    form.get_by_label("Platform").fill("Shop")
    form.get_by_label("Label").fill("keys")
    form.get_by_role("button", name="Encrypt and save").click()
    expect(page.get_by_text("Add at least one name = value line.")).to_be_visible()
    expect(page.locator("#credential-form").get_by_label("Other secrets, one “name = value” a line")).to_be_visible()
    expect(page.locator("#credential-form").get_by_label("Username (for a username and password)")).to_be_hidden()
